package main

// rules maps jitsu's JSON log lines to timeline rows. It is the ONE place to
// adjust when jitsu's log messages change: the first rule whose Msg and
// Fields all match a line gives that line's label. Lines no rule matches are
// still printed (with their msg and fields) when they concern the unikernel
// being followed or are warnings and errors, so a renamed message shows up as
// a raw line instead of disappearing.
//
// Msg and Fields values are case-insensitive regular expressions; a Fields
// entry requires the field to be present and its value (as text) to match.
// In Label, {field} is replaced by that field's value ("" when absent), and
// {msg} by the message.
var rules = []rule{
	// dnsserver: a query for a unikernel name was answered (and summoned it).
	{Msg: `query|answer`, Fields: map[string]string{"name": `.`}, Label: "DNS query answered: {name} {qtype} → {ip}", Kind: kindQuery},
	{Msg: `summon`, Label: "summoned {unikernel} ({reason})", Kind: kindQuery},
	// summoner: every state transition carries from and to.
	{Msg: `.`, Fields: map[string]string{"from": `.`, "to": `^starting$`}, Label: "{unikernel}: {from} → starting ({reason})"},
	{Msg: `.`, Fields: map[string]string{"from": `.`, "to": `^ready$|^running$`}, Label: "{unikernel}: {from} → {to}: ready ({duration} after the start)"},
	{Msg: `.`, Fields: map[string]string{"from": `.`, "to": `stop|suspend|save|fail|crash|backoff`}, Label: "{unikernel}: {from} → {to} ({reason})", Kind: kindStop},
	{Msg: `.`, Fields: map[string]string{"from": `.`, "to": `.`}, Label: "{unikernel}: {from} → {to} ({reason})"},
	// hypervisor / summoner: the domain itself.
	{Msg: `^domain (resumed|restored)`, Label: "{msg}"},
	{Msg: `domain.*(start|creat|boot)|(start|creat|boot).*domain`, Label: "domain started ({duration})"},
	{Msg: `ready|probe ok|probe succeeded`, Label: "ready ({duration})"},
	// summoner: what summoned the boot.
	// Its mode says how it starts: boot, warm (the warm pool's paused
	// domain resumed), resume (a suspended one) or restore.
	{Msg: `^booting unikernel$`, Fields: map[string]string{"mode": `.`}, Label: "{unikernel}: booting (trigger: {trigger}, start mode: {mode})"},
	{Msg: `^booting unikernel$`, Label: "{unikernel}: booting (trigger: {trigger})"},
	// synproxy / summoner: SYNs held while booting, replayed once ready.
	{Msg: `^held SYNs replayed$`, Label: "held SYNs replayed ({packets}) to {addrs}"},
	{Msg: `replay`, Label: "SYNs replayed ({count}) to {ip}"},
	{Msg: `hold|held|syn`, Label: "SYN held from {src}"},
	{Msg: `idle`, Label: "{unikernel}: idle, stopping ({reason})", Kind: kindStop},
	{Msg: `stop|destroy|shut ?down|suspend|sav`, Label: "{unikernel}: {msg} ({reason})", Kind: kindStop},
}
