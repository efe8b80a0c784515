// Package synproxy holds the first TCP SYNs of clients of a unikernel while
// it boots, and delivers them the moment it is ready, so the client's
// connection completes without waiting for a SYN retransmission (1 s, 3 s,
// ...) and without being reset by a guest whose stack is up before its
// server listens. It needs nothing from the guest.
//
// # Mechanism
//
// The proxy owns one nftables table (Options.Table: jitsu names it after
// its instance id; "inet jitsu_synproxy" by default), with sets of held
// addresses (held4, held6; udp4, udp6 for those whose datagrams are held
// too) and base chains in the forward hook (clients routed through the
// host) and the output hook (clients on the host itself), at mangle
// priority. Each chain has, per family and protocol:
//
//	tcp flags syn / syn,ack ip daddr @held4 queue num N bypass
//	tcp flags syn / syn,ack ip6 daddr @held6 queue num N bypass
//	udp ip daddr @udp4 queue num N bypass
//	udp ip6 daddr @udp6 queue num N bypass
//
// An address is held while its unikernel boots, and also while it is
// stopped (armed): Options.OnPacket reports each held packet, and the
// summoner boots the unikernel. Every chain, and one in the input hook,
// first jumps to a "meter" chain of per-address counters of client
// traffic (see Proxy.Traffic).
//
// Only client SYNs to held addresses leave the kernel fast path; all other
// traffic, and everything to an address once released, never does. The
// packets wait in the kernel's NFQUEUE; the proxy reads a copy of their
// headers (github.com/florianl/go-nfqueue), decodes them with gopacket and
// keeps only the packet id and the 4-tuple. Release removes the address
// from the set first (later SYNs pass directly), then gives every held
// packet of that address the verdict ACCEPT, oldest first: the kernel sends
// the client's original SYN on its way, there is nothing to rebuild and no
// proxy in the data path afterwards, and the guest's SYN-ACK goes straight
// back. Drop sends each held client a RST+ACK built with gopacket through a
// raw socket (as a closed port would), then gives its SYN the verdict DROP.
//
// Why NFQUEUE rather than capturing on the bridge with AF_PACKET: a
// capture only sees a copy, so a bridge-level drop rule is needed as well
// and the SYN must be rebuilt and re-injected with the right MAC addresses;
// the queue intercepts the one real packet before it reaches the bridge, in
// both the routed and the host-local path, and replay is one verdict.
// "bypass" makes it fail open: if jitsu dies, nothing listens on the queue
// and the kernel lets the SYNs through instead of black-holing them.
//
// Kernels without the native nft "queue" expression (CONFIG_NFT_QUEUE, as
// on the machine this was written on) get the same rule with the xtables
// NFQUEUE target through nft_compat (CONFIG_NFT_COMPAT and
// CONFIG_NETFILTER_XT_TARGET_NFQUEUE): Run tries the native expression
// first and falls back. `nft list` then warns that the table is "managed by
// iptables-nft"; it is not, it only uses a compat target.
//
// # Neighbour entries
//
// While an address is held, its neighbour entry on the bridge (ARP or NDP)
// is pinned PERMANENT to the guest's MAC, so the released SYN leaves at
// once, with no address resolution. On Release it becomes an ordinary
// REACHABLE entry with the same MAC, which the kernel ages and re-validates
// as usual; on Drop and when Run returns it is deleted.
//
// # Bounds
//
// The hold is bounded per address, in total, in bytes and in age
// (Limits). A retransmitted SYN of a held 4-tuple replaces the one held
// (the latest is kept, the older one dropped: "duplicate"). A SYN that
// does not fit is dropped at once ("overflow") and the ones held first
// stay: a flood cannot evict clients that came first. The kernel queue
// is capped at Limits.Total+1024 packets, above the proxy's own bound, so
// the proxy decides; a packet the kernel cannot hand over is dropped, never
// passed. Malformed or odd packets are dropped and counted ("malformed").
// Every drop is counted in jitsu_synproxy_syns_dropped_total{reason}; a
// dropped SYN costs the client one retransmission, never a reset.
//
// # Clean-up
//
// Run gives every held SYN a DROP verdict (the clients retransmit, and
// with the table gone their retransmission passes), deletes the pinned
// neighbour entries and the table, and unbinds the queue. After a crash,
// Cleanup (also done by Run before it installs its table) deletes the
// table and the PERMANENT neighbour entries of the addresses still in its
// sets: the table itself is the journal of what was pinned.
//
// The proxy needs CAP_NET_ADMIN (nftables, queue, neighbours) and
// CAP_NET_RAW (resets). One proxy per network namespace.
package synproxy
