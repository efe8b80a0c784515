package config

import (
	"errors"
	"strings"
	"testing"
)

// base is a valid configuration the error cases append to.
const base = `[network]
gateway = "10.213.0.1/24"

[[zone]]
origin = "example.test."
soa = "ns1 hostmaster 1 3600 600 86400 60"
ns = ["ns1"]
records = ["ns1 A 127.0.0.1"]
`

// unikernel returns a valid [[unikernel]] table with the given name and
// last IPv4 octet. Each extra "key = value" line replaces the line of the
// same key, or is appended.
func unikernel(name, octet string, extra ...string) string {
	lines := []string{
		"",
		"[[unikernel]]",
		"name = \"" + name + "\"",
		"dns = [\"" + name + ".example.test.\"]",
		"ip = \"10.213.0." + octet + "\"",
		"kernel = \"/k\"",
	}
next:
	for _, e := range extra {
		key, _, _ := strings.Cut(e, " ")
		for i, l := range lines {
			if strings.HasPrefix(l, key+" = ") {
				lines[i] = e
				continue next
			}
		}
		lines = append(lines, e)
	}
	return strings.Join(lines, "\n") + "\n"
}

// wantErr is one expected problem: on the line containing mark, about key,
// with msg in its message.
type wantErr struct {
	mark, key, msg string
}

// lineOf returns the 1-based line on which the only occurrence of mark
// (which may span lines) in text starts.
func lineOf(t *testing.T, text, mark string) int {
	t.Helper()
	if n := strings.Count(text, mark); n != 1 {
		t.Fatalf("mark %q occurs %d times", mark, n)
	}
	return strings.Count(text[:strings.Index(text, mark)], "\n") + 1
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		text string // appended to base unless raw
		raw  bool
		want []wantErr
	}{
		// TOML syntax.
		{name: "syntax", text: "[dns]\nlisten = [\"127.0.0.1:53\",, ] # E1\n",
			want: []wantErr{{"# E1", "dns.listen", "unexpected comma"}}},
		{name: "syntax duplicate key", text: "[dns]\nsummon_ttl = \"1s\"\nsummon_ttl = \"2s\" # E1\n",
			want: []wantErr{{"# E1", "dns.summon_ttl", "already been defined"}}},

		// Unknown keys.
		{name: "unknown table", text: "[dsn] # E1\nlisten = [\"127.0.0.1:53\"]\n",
			want: []wantErr{{"# E1", "dsn", "unknown key"}}},
		{name: "unknown key", text: "[dns]\nlisten_addr = [\"127.0.0.1:53\"] # E1\n",
			want: []wantErr{{"# E1", "dns.listen_addr", "known keys here: cookie_secret_file, cookies, listen, response_delay, rrl_rate, rrl_slip, rrl_window, summon_ttl"}}},
		{name: "unknown key in second unikernel", text: unikernel("a", "2") + unikernel("b", "3", "idle = \"5m\" # E1"),
			want: []wantErr{{"# E1", "unikernel[1].idle", "unknown key"}}},
		{name: "unknown dotted key", raw: true, text: "synproxy.enable = true # E1\n" + base,
			want: []wantErr{{"# E1", "synproxy.enable", "unknown key"}}},
		{name: "unknown quoted key", text: "[metrics]\n\"list en\" = \"x\" # E1\n",
			want: []wantErr{{"# E1", `metrics."list en"`, "unknown key"}}},
		{name: "unknown key in zone", text: "origin2 = 1 # E1\n",
			want: []wantErr{{"# E1", "zone[0].origin2", "unknown key"}}},

		// Wrong types.
		{name: "type duration", text: "[dns]\nsummon_ttl = 5 # E1\n",
			want: []wantErr{{"# E1", "dns.summon_ttl", "want a duration string such as \"60s\", got integer"}}},
		{name: "type string list", text: "[dns]\nlisten = \"127.0.0.1:53\" # E1\n",
			want: []wantErr{{"# E1", "dns.listen", "want array of strings, got string"}}},
		{name: "type list element", text: "[dns]\nlisten = [\n  \"127.0.0.1:53\",\n  53, # E1\n  \"x\", # E2\n]\n",
			want: []wantErr{{"# E1", "dns.listen[1]", "want string, got integer"}, {"# E2", "dns.listen[2]", "not an \"ip:port\""}}},
		{name: "type boolean", text: "[synproxy]\nenabled = \"yes\" # E1\n",
			want: []wantErr{{"# E1", "synproxy.enabled", "want boolean, got string"}}},
		{name: "type integer", text: unikernel("a", "2", "vcpus = \"2\" # E1"),
			want: []wantErr{{"# E1", "unikernel[0].vcpus", "want integer, got string"}}},
		{name: "type table", raw: true, text: "dns = 1 # E1\n" + base,
			want: []wantErr{{"# E1", "dns", "want table, got integer"}}},
		{name: "type size", text: "[budget]\nmemory = 1.5 # E1\n",
			want: []wantErr{{"# E1", "budget.memory", "want a size string"}}},
		{name: "integer range", text: "[synproxy]\nmax_total = 0 # E1\n",
			want: []wantErr{{"# E1", "synproxy.max_total", "out of range"}}},

		{name: "guest_cpu_weight range", text: "[hypervisor]\nguest_cpu_weight = 20000 # E1\n",
			want: []wantErr{{"# E1", "hypervisor.guest_cpu_weight", "out of range (want 0 to 10000)"}}},
		{name: "max_starting negative", text: "[budget]\nmax_starting = -1 # E1\n",
			want: []wantErr{{"# E1", "budget.max_starting", "out of range"}}},
		{name: "max_starting type", text: "[budget]\nmax_starting = \"2\" # E1\n",
			want: []wantErr{{"# E1", "budget.max_starting", "want integer, got string"}}},

		// Warm pool and summon groups.
		{name: "warm with suspend", text: unikernel("a", "2", "stop_mode = \"suspend\"", "warm = true # E1"),
			want: []wantErr{{"# E1", "unikernel[0].warm", "stop_mode is suspend"}}},
		{name: "warm without pool", text: "[budget]\nwarm_max = 0\n" + unikernel("a", "2", "warm = true # E1"),
			want: []wantErr{{"# E1", "unikernel[0].warm", "warm_max is 0"}}},
		{name: "start unknown", text: unikernel("a", "2", "start = \"resume\" # E1"),
			want: []wantErr{{"# E1", "unikernel[0].start", "unknown start"}}},
		{name: "snapshot with save", text: unikernel("a", "2", "stop_mode = \"save\"", "start = \"snapshot\" # E1"),
			want: []wantErr{{"# E1", "unikernel[0].start", "stop_mode is save"}}},
		{name: "snapshot with console probe", text: unikernel("a", "2", "ready = \"console:ready\"", "start = \"snapshot\" # E1"),
			want: []wantErr{{"# E1", "unikernel[0].start", "console probe"}}},
		{name: "warm too big", text: "[budget]\nwarm_memory = \"32MiB\"\n" + unikernel("a", "2", "warm = true # E1"),
			want: []wantErr{{"# E1", "unikernel[0].warm", "does not fit in budget.warm_memory"}}},
		{name: "with unknown", text: unikernel("a", "2", "with = [\n  \"b\",\n  \"nope\", # E1\n]") + unikernel("b", "3"),
			want: []wantErr{{"# E1", "unikernel[0].with[1]", "\"nope\" is not the name of a unikernel"}}},
		{name: "with itself", text: unikernel("a", "2", "with = [\"a\"] # E1"),
			want: []wantErr{{"# E1", "unikernel[0].with[0]", "the unikernel itself"}}},
		{name: "with twice", text: unikernel("a", "2") + unikernel("b", "3", "with = [\n  \"a\",\n  \"a\", # E1\n]"),
			want: []wantErr{{"# E1", "unikernel[1].with[1]", "given twice"}}},
		{name: "with empty", text: unikernel("a", "2", "with = [] # E1"),
			want: []wantErr{{"# E1", "unikernel[0].with", "empty"}}},

		// Durations and sizes.
		{name: "bad duration", text: unikernel("a", "2", "idle_timeout = \"60\" # E1"),
			want: []wantErr{{"# E1", "unikernel[0].idle_timeout", "not a duration: \"60\""}}},
		{name: "negative duration", text: "[defaults]\nboot_timeout = \"-1s\" # E1\n",
			want: []wantErr{{"# E1", "defaults.boot_timeout", "negative duration"}}},
		{name: "fractional ttl", text: "ttl = \"1.5s\" # E1\n",
			want: []wantErr{{"# E1", "zone[0].ttl", "not a whole number of seconds"}}},
		{name: "ambiguous size", text: "[defaults]\nmemory = \"64M\" # E1\n",
			want: []wantErr{{"# E1", "defaults.memory", "write 64MiB"}}},
		{name: "bad size", text: "[synproxy]\nmax_bytes = \"lots\" # E1\n",
			want: []wantErr{{"# E1", "synproxy.max_bytes", "not a size: \"lots\""}}},
		{name: "tiny memory", text: unikernel("a", "2", "memory = \"512KiB\" # E1"),
			want: []wantErr{{"# E1", "unikernel[0].memory", "too little"}}},

		// Addresses.
		{name: "bad listen", text: "[dns]\nlisten = [\"localhost:53\"] # E1\n",
			want: []wantErr{{"# E1", "dns.listen[0]", "not an \"ip:port\" address"}}},
		{name: "duplicate listen", text: "[dns]\nlisten = [\"127.0.0.1:53\", \"127.0.0.1:53\"] # E1\n",
			want: []wantErr{{"# E1", "dns.listen[1]", "listed twice"}}},
		{name: "bad metrics listen", text: "[metrics]\nlisten = \":9153x\" # E1\n",
			want: []wantErr{{"# E1", "metrics.listen", "not an \"ip:port\""}}},
		{name: "gateway without prefix", raw: true,
			text: "[network]\ngateway = \"10.213.0.1\" # E1\n",
			want: []wantErr{{"# E1", "network.gateway", "prefix length"}}},
		{name: "gateway network address", raw: true,
			text: "[network]\ngateway = \"10.213.0.0/24\" # E1\n",
			want: []wantErr{{"# E1", "network.gateway", "not a host address"}}},
		{name: "gateway6 v4", raw: true,
			text: "[network]\ngateway6 = \"10.0.0.1/24\" # E1\n",
			want: []wantErr{{"# E1", "network.gateway6", "not an IPv6 prefix"}}},
		{name: "bad ip", text: unikernel("a", "2", "ip = \"10.213.0.300\" # E1"),
			want: []wantErr{{"# E1", "unikernel[0].ip", "not an IPv4 address"}}},
		{name: "ip outside gateway", text: "\n[[unikernel]]\nname = \"a\"\ndns = [\"a.example.test\"]\nip = \"10.214.0.5\" # E1\nkernel = \"/k\"\n",
			want: []wantErr{{"# E1", "unikernel[0].ip", "outside network.gateway 10.213.0.0/24"}}},
		{name: "ip is gateway", text: unikernel("a", "2", "ip = \"10.213.0.1\" # E1"),
			want: []wantErr{{"# E1", "unikernel[0].ip", "gateway's own address"}}},
		{name: "ip is broadcast", text: unikernel("a", "2", "ip = \"10.213.0.255\" # E1"),
			want: []wantErr{{"# E1", "unikernel[0].ip", "broadcast"}}},
		{name: "ip6 without gateway6", text: unikernel("a", "2", "ip6 = \"fd00::5\" # E1"),
			want: []wantErr{{"# E1", "unikernel[0].ip6", "needs network.gateway6"}}},
		{name: "missing gateway", raw: true,
			text: "[[zone]]\norigin = \"example.test.\"\nsoa = \"ns1 h 1 2 3 4 5\"\nns = [\"ns1\"]\n\n[[unikernel]] # E1\nname = \"a\"\ndns = [\"a.example.test.\"]\nip = \"10.0.0.2\"\nkernel = \"/k\"\n",
			want: []wantErr{{"# E1", "network.gateway", "missing"}}},

		// MAC, regexp, ready, stop mode.
		{name: "bad mac", text: unikernel("a", "2", "mac = \"52:54:00:zz:00:01\" # E1"),
			want: []wantErr{{"# E1", "unikernel[0].mac", "not an Ethernet MAC address"}}},
		{name: "multicast mac", text: unikernel("a", "2", "mac = \"01:00:5e:00:00:01\" # E1"),
			want: []wantErr{{"# E1", "unikernel[0].mac", "multicast"}}},
		{name: "duplicate mac", text: unikernel("a", "2", "mac = \"52:54:00:00:00:01\"") + unikernel("b", "3", "mac = \"52:54:00:00:00:01\" # E1"),
			want: []wantErr{{"# E1", "unikernel[1].mac", "already the MAC address of unikernel \"a\""}}},
		{name: "bad instance id", text: "[daemon]\nid = \"Jitsu/1\" # E1\n",
			want: []wantErr{{"# E1", "daemon.id", "not a valid instance id"}}},
		{name: "relative lock dir", text: "[daemon]\nlock_dir = \"run\" # E1\n",
			want: []wantErr{{"# E1", "daemon.lock_dir", "not an absolute path"}}},
		{name: "derived macs collide", text: unikernel("u34929", "2") + unikernel("u64854", "3", "name = \"u64854\" # E1"),
			want: []wantErr{{"# E1", "unikernel[1].name", "52:54:00:19:05:31, is already the MAC address of unikernel \"u34929\""}}},
		{name: "derived mac collides with an explicit one", text: unikernel("u34929", "2") + unikernel("b", "3", "mac = \"52:54:00:19:05:31\""),
			want: []wantErr{{"name = \"u34929\"", "unikernel[0].name", "already the MAC address of unikernel \"b\""}}},
		{name: "bad regexp", text: unikernel("a", "2", "ready = \"console:(JITSU\" # E1"),
			want: []wantErr{{"# E1", "unikernel[0].ready", "bad regular expression"}}},
		{name: "bad ready kind", text: "[defaults]\nready = \"http:80\" # E1\n",
			want: []wantErr{{"# E1", "defaults.ready", "unknown readiness probe kind \"http\""}}},
		{name: "bad ready port", text: "[defaults]\nready = \"tcp:0\" # E1\n",
			want: []wantErr{{"# E1", "defaults.ready", "bad port"}}},
		{name: "bad ready syntax", text: "[defaults]\nready = \"tcp\" # E1\n",
			want: []wantErr{{"# E1", "defaults.ready", "want tcp:PORT"}}},
		{name: "bad ready delay", text: "[defaults]\nready = \"delay:soon\" # E1\n",
			want: []wantErr{{"# E1", "defaults.ready", "not a duration"}}},
		{name: "bad stop mode", text: unikernel("a", "2", "stop_mode = \"pause\" # E1"),
			want: []wantErr{{"# E1", "unikernel[0].stop_mode", "unknown stop mode \"pause\""}}},
		{name: "bad trigger", text: unikernel("a", "2", "trigger = [\"dns\", \"icmp\"] # E1"),
			want: []wantErr{{"# E1", "unikernel[0].trigger[1]", "unknown trigger \"icmp\""}}},
		{name: "empty trigger", text: "[defaults]\ntrigger = [] # E1\n",
			want: []wantErr{{"# E1", "defaults.trigger", "empty"}}},
		{name: "twice trigger", text: unikernel("a", "2", "trigger = [\"tcp\", \"tcp\"] # E1"),
			want: []wantErr{{"# E1", "unikernel[0].trigger[1]", "given twice"}}},
		{name: "bad domain type", text: "[hypervisor]\ndomain_type = \"xen\" # E1\n",
			want: []wantErr{{"# E1", "hypervisor.domain_type", "unknown domain type"}}},

		// Unikernel identity and claims.
		{name: "duplicate name", text: unikernel("a", "2") + "\n[[unikernel]] # L1\nname = \"a\" # E1\ndns = [\"b.example.test.\"]\nip = \"10.213.0.3\"\nkernel = \"/k\"\n",
			want: []wantErr{{"# E1", "unikernel[1].name", "\"a\" is already the name of unikernel \"a\" (line 10)"}}},
		{name: "bad name", text: unikernel("a b", "2"),
			want: []wantErr{{"name = \"a b\"", "unikernel[0].name", "not a valid name"}}},
		{name: "duplicate dns name", text: unikernel("a", "2") + unikernel("b", "3", "dns = [\"b.example.test.\", \"A.Example.Test\"] # E1"),
			want: []wantErr{{"# E1", "unikernel[1].dns[1]", "a.example.test. is already a name of unikernel \"a\""}}},
		{name: "duplicate ip", text: unikernel("a", "2") + unikernel("b", "3", "ip = \"10.213.0.2\" # E1"),
			want: []wantErr{{"# E1", "unikernel[1].ip", "10.213.0.2 is already the address of unikernel \"a\""}}},
		{name: "dns outside zones", text: unikernel("a", "2", "dns = [\"a.example.org.\"] # E1"),
			want: []wantErr{{"# E1", "unikernel[0].dns[0]", "a.example.org. is outside every zone"}}},
		{name: "wildcard dns", text: unikernel("a", "2", "dns = [\"*.example.test.\"] # E1"),
			want: []wantErr{{"# E1", "unikernel[0].dns[0]", "wildcard"}}},
		{name: "missing kernel", text: "\n[[unikernel]] # E1\nname = \"a\"\ndns = [\"a.example.test.\"]\nip = \"10.213.0.2\"\n",
			want: []wantErr{{"# E1", "unikernel[0].kernel", "missing"}}},
		{name: "relative kernel", text: "\n[[unikernel]]\nname = \"a\"\ndns = [\"a.example.test.\"]\nip = \"10.213.0.2\"\nkernel = \"bzImage\" # E1\n",
			want: []wantErr{{"# E1", "unikernel[0].kernel", "not an absolute path"}}},
		{name: "missing name dns ip", text: "\n[[unikernel]] # E1\nkernel = \"/k\"\n",
			want: []wantErr{
				{"# E1", "unikernel[0].name", "missing"},
				{"# E1", "unikernel[0].dns", "missing"},
				{"# E1", "unikernel[0].ip", "missing"},
			}},
		{name: "memory over budget", text: "[budget]\nmemory = \"32MiB\"\n" + unikernel("a", "2") + "memory = \"64MiB\" # E1\n",
			want: []wantErr{{"# E1", "unikernel[0].memory", "does not fit in budget.memory (32MiB)"}}},

		// Templates.
		{name: "template syntax", text: unikernel("a", "2", "cmdline = \"ip={{.IP\" # E1"),
			want: []wantErr{{"# E1", "unikernel[0].cmdline", "bad template"}}},
		{name: "template field", text: "[defaults]\ncmdline = \"ip={{.Address}}\" # E1\n" + unikernel("a", "2"),
			want: []wantErr{{"# E1", "defaults.cmdline", "Address"}}},

		// Zones and records.
		{name: "record does not parse", text: "records = [\n  \"www A 192.0.2.1\",\n  \"mail A 192.0.2\", # E1\n]\n", raw: true,
			want: []wantErr{{"# E1", "zone[0].records[1]", "dns: bad A A"}}},
		{name: "record owner outside zone", text: "\n[[zone]]\norigin = \"other.test\"\nsoa = \"ns1 h 1 2 3 4 5\"\nns = [\"ns1\"]\nrecords = [\"www.example.test. A 192.0.2.1\"] # E1\n",
			want: []wantErr{{"# E1", "zone[1].records[0]", "owner www.example.test. is outside the zone other.test."}}},
		{name: "record in more specific zone", text: "records = [\"www.sub A 192.0.2.1\"] # E1\n\n[[zone]] # L1\norigin = \"sub.example.test.\"\nsoa = \"ns1 h 1 2 3 4 5\"\nns = [\"ns1\"]\n", raw: true,
			want: []wantErr{{"# E1", "zone[0].records[0]", "belongs to the more specific zone sub.example.test."}}},
		{name: "two records in one string", text: "records = [\"a A 192.0.2.1\\nb A 192.0.2.2\"] # E1\n", raw: true,
			want: []wantErr{{"# E1", "zone[0].records[0]", "more than one record"}}},
		{name: "record class", text: "records = [\"a CH A 192.0.2.1\"] # E1\n", raw: true,
			want: []wantErr{{"# E1", "zone[0].records[0]", "only class IN"}}},
		{name: "SOA in records", text: "records = [\"@ SOA ns1 h 1 2 3 4 5\"] # E1\n", raw: true,
			want: []wantErr{{"# E1", "zone[0].records[0]", "belongs in the zone's soa key"}}},
		{name: "bad soa", text: "soa = \"ns1 hostmaster one 2 3 4 5\" # E1\n", raw: true,
			want: []wantErr{{"# E1", "zone[0].soa", "dns: bad SOA"}}},
		{name: "bad ns", text: "ns = [\"ns1\", \"ns2..\"] # E1\n", raw: true,
			want: []wantErr{{"# E1", "zone[0].ns[1]", "dns: bad NS"}}},
		{name: "duplicate origin", text: "\n[[zone]]\norigin = \"EXAMPLE.test\" # E1\nsoa = \"ns1 h 1 2 3 4 5\"\nns = [\"ns1\"]\n",
			want: []wantErr{{"# E1", "zone[1].origin", "zone example.test. is already defined at line 4"}}},
		{name: "missing zone keys", text: "\n[[zone]] # E1\nttl = \"1h\"\n",
			want: []wantErr{
				{"# E1", "zone[1].origin", "missing"},
				{"# E1", "zone[1].soa", "missing"},
				{"# E1", "zone[1].ns", "missing"},
			}},
		{name: "cname with other data", text: "records = [\"a A 192.0.2.1\", \"a CNAME b\"] # E1\n", raw: true,
			want: []wantErr{{"# E1", "zone[0].records[1]", "a CNAME at a.example.test. cannot share its name with other records: A (line"}}},
		{name: "cname at unikernel name", text: "records = [\"a CNAME www\"]\n" + unikernel("a", "2", "dns = [\"a.example.test\"] # E2"), raw: true,
			want: []wantErr{{"# E2", "unikernel[0].dns[0]", "a.example.test. has a static CNAME record"}}},
		{name: "static A at unikernel name", text: "records = [\"a A 192.0.2.9\"]\n" + unikernel("a", "2", "dns = [\"a.example.test\"] # E2"), raw: true,
			want: []wantErr{{"# E2", "unikernel[0].dns[0]", "has a static A record"}}},

		// Other sections.
		{name: "pprof without listen", text: "[metrics]\npprof = true # E1\n",
			want: []wantErr{{"# E1", "metrics.pprof", "set metrics.listen"}}},
		{name: "metrics two auth files", text: "[metrics]\nbasic_auth_file = \"/etc/jitsu/basic\"\nbearer_token_file = \"/etc/jitsu/token\" # E1\n",
			want: []wantErr{{"# E1", "metrics.bearer_token_file", "not both"}}},
		{name: "metrics auth file relative", text: "[metrics]\nbearer_token_file = \"token\" # E1\n",
			want: []wantErr{{"# E1", "metrics.bearer_token_file", "not an absolute path"}}},
		{name: "response delay capped", text: "[dns]\nresponse_delay = \"1m\" # E1\n",
			want: []wantErr{{"# E1", "dns.response_delay", "longer than the maximum 10s"}}},
		{name: "rrl window", text: "[dns]\nrrl_window = \"500ms\" # E1\n",
			want: []wantErr{{"# E1", "dns.rrl_window", "out of range"}}},
		{name: "rrl window fraction", text: "[dns]\nrrl_window = \"1500ms\" # E1\n",
			want: []wantErr{{"# E1", "dns.rrl_window", "whole number of seconds"}}},
		{name: "rrl rate negative", text: "[dns]\nrrl_rate = -1 # E1\n",
			want: []wantErr{{"# E1", "dns.rrl_rate", "out of range"}}},
		{name: "rrl slip type", text: "[dns]\nrrl_slip = \"2\" # E1\n",
			want: []wantErr{{"# E1", "dns.rrl_slip", "want integer, got string"}}},
		{name: "cookies type", text: "[dns]\ncookies = \"yes\" # E1\n",
			want: []wantErr{{"# E1", "dns.cookies", "want boolean, got string"}}},
		{name: "control mode", text: "[control]\nmode = 0o1777 # E1\n",
			want: []wantErr{{"# E1", "control.mode", "out of range"}}},
		{name: "control mode string", text: "[control]\nmode = \"rw\" # E1\n",
			want: []wantErr{{"# E1", "control.mode", "not an octal file mode"}}},
		{name: "control socket relative", text: "[control]\nsocket = \"jitsu.sock\" # E1\n",
			want: []wantErr{{"# E1", "control.socket", "not an absolute path"}}},
		{name: "bad bridge", text: "[hypervisor]\n[network]\nbridge = \"a-very-long-bridge-name\" # E1\ngateway = \"10.213.0.1/24\"\n", raw: true,
			want: []wantErr{{"# E1", "network.bridge", "not a valid interface name"}}},

		// Every problem is reported, in line order.
		{name: "collects all",
			text: "[dns]\nsummon_ttl = \"x\" # E1\nfoo = 1 # E2\n[synproxy]\nmax_age = \"0s\" # E3\n" +
				unikernel("a", "2", "stop_mode = \"x\" # E4") + unikernel("a", "2", "name = \"a\" # E5", "ip = \"10.213.0.2\" # F5", "mac = \"x\" # E6"),
			want: []wantErr{
				{"# E1", "dns.summon_ttl", "not a duration"},
				{"# E2", "dns.foo", "unknown key"},
				{"# E3", "synproxy.max_age", "must be positive"},
				{"# E4", "unikernel[0].stop_mode", "unknown stop mode"},
				{"# E5", "unikernel[1].name", "already the name"},
				{"dns = [\"a.example.test.\"]\nip = \"10.213.0.2\" # F5", "unikernel[1].dns[0]", "already a name"},
				{"# F5", "unikernel[1].ip", "already the address"},
				{"# E6", "unikernel[1].mac", "not an Ethernet MAC"},
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := tc.text
			if !tc.raw {
				text = base + tc.text
			} else if strings.HasPrefix(text, "records") || strings.HasPrefix(text, "soa") || strings.HasPrefix(text, "ns =") {
				// Keys of the base zone: replace its line.
				key := text[:strings.Index(text, " ")]
				lines := strings.Split(base, "\n")
				for i, l := range lines {
					if strings.HasPrefix(l, key+" ") {
						first, rest, _ := strings.Cut(text, "\n")
						lines[i] = first
						text = strings.Join(lines, "\n") + rest
						break
					}
				}
			}
			cfg, err := Parse("test.toml", []byte(text))
			if err == nil {
				t.Fatalf("no error for:\n%s", text)
			}
			if cfg != nil {
				t.Errorf("a configuration was returned with the error")
			}
			checkErrors(t, text, err, tc.want)
		})
	}
}

// checkErrors checks that err, from parsing text as test.toml, is an
// *Errors listing want, in order.
func checkErrors(t *testing.T, text string, err error, want []wantErr) {
	t.Helper()
	var es *Errors
	if !errors.As(err, &es) {
		t.Fatalf("error is %T, not *Errors: %v", err, err)
	}
	if len(es.List) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v\nin:\n%s", len(es.List), len(want), err, numbered(text))
	}
	for i, w := range want {
		got := es.List[i]
		line := lineOf(t, text, w.mark)
		if got.File != "test.toml" || got.Line != line || got.Key != w.key || !strings.Contains(got.Msg, w.msg) {
			t.Errorf("error %d is\n  %v\nwant test.toml:%d: %s: ...%s...\nin:\n%s", i, got, line, w.key, w.msg, numbered(text))
		}
	}
}

// numbered returns text with line numbers, for failure messages.
func numbered(text string) string {
	var b strings.Builder
	for i, l := range strings.Split(text, "\n") {
		b.WriteString(strings.Repeat(" ", 3-len(itoa(i+1))) + itoa(i+1) + "  " + l + "\n")
	}
	return b.String()
}

func itoa(i int) string {
	s := ""
	for ; i > 0; i /= 10 {
		s = string(rune('0'+i%10)) + s
	}
	return s
}

func TestErrorFormat(t *testing.T) {
	es := &Errors{List: []*Error{
		{File: "a.toml", Line: 3, Key: "dns.listen", Msg: "bad"},
		{File: "a.toml", Line: 7, Msg: "no key"},
		{File: "a.toml", Key: "k", Msg: "no line"},
	}}
	want := "a.toml:3: dns.listen: bad\na.toml:7: no key\na.toml: k: no line"
	if got := es.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var e *Error
	if !errors.As(es, &e) || e.Line != 3 {
		t.Errorf("errors.As did not find the first *Error: %v", e)
	}
}
