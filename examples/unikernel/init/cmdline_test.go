package main

import (
	"net/netip"
	"reflect"
	"testing"
)

func TestParseCmdline(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		name    string
		in      string
		want    BootConfig
		wantErr bool
	}{
		{
			name: "jitsu form",
			in:   "console=ttyS0 quiet ip=10.0.0.2::10.0.0.1:255.255.255.0::eth0:off jitsu.name=www.example.org\n",
			want: BootConfig{Port: 80, Root: "/www", Name: "www.example.org", IP: IPConfig{
				Client: a("10.0.0.2"), Gateway: a("10.0.0.1"), Netmask: a("255.255.255.0"), Device: "eth0", Autoconf: "off"}},
		},
		{
			name: "all fields",
			in:   "ip=192.168.1.5:192.168.1.1:192.168.1.254:255.255.0.0:box:eth1:none:8.8.8.8",
			want: BootConfig{Port: 80, Root: "/www", IP: IPConfig{
				Client: a("192.168.1.5"), Server: a("192.168.1.1"), Gateway: a("192.168.1.254"),
				Netmask: a("255.255.0.0"), Hostname: "box", Device: "eth1", Autoconf: "none"}},
		},
		{
			name: "client only, short form",
			in:   "ip=10.1.2.3",
			want: BootConfig{Port: 80, Root: "/www", IP: IPConfig{Client: a("10.1.2.3")}},
		},
		{name: "dhcp", in: "ip=dhcp", want: BootConfig{Port: 80, Root: "/www"}},
		{name: "empty", in: "", want: BootConfig{Port: 80, Root: "/www"}},
		{
			name: "quoted and extra params",
			in:   `foo "jitsu.name=a b" jitsu.port=8080 jitsu.root=/srv ip=off jitsu.debug=1`,
			want: BootConfig{Port: 8080, Root: "/srv", Name: "a b", Debug: true},
		},
		{name: "last ip wins", in: "ip=1.1.1.1 ip=2.2.2.2",
			want: BootConfig{Port: 80, Root: "/www", IP: IPConfig{Client: a("2.2.2.2")}}},
		{name: "bad client", in: "ip=10.0.0.300::10.0.0.1:255.255.255.0::eth0:off", wantErr: true},
		{name: "ipv6 client", in: "ip=fe80::1", wantErr: true},
		{name: "bad netmask", in: "ip=10.0.0.2::10.0.0.1:255.0.255.0::eth0:off", wantErr: true},
		{name: "bad port", in: "jitsu.port=0", wantErr: true},
		{name: "port not a number", in: "jitsu.port=http", wantErr: true},
		{name: "relative root", in: "jitsu.root=www", wantErr: true},
		{name: "garbage word", in: "ip=banana", wantErr: true},
		{
			name: "ipv6 address and gateway",
			in:   "jitsu.ip6=fd00:213::5/64 jitsu.gw6=fd00:213::1",
			want: BootConfig{Port: 80, Root: "/www", IP6: IP6Config{
				Addr: netip.MustParsePrefix("fd00:213::5/64"), Gateway: a("fd00:213::1")}},
		},
		{
			name: "ipv6 bare address means /64",
			in:   "jitsu.ip6=fd00::7",
			want: BootConfig{Port: 80, Root: "/www", IP6: IP6Config{Addr: netip.MustParsePrefix("fd00::7/64")}},
		},
		{name: "ipv6 address that is IPv4", in: "jitsu.ip6=10.0.0.2/24", wantErr: true},
		{name: "ipv6 gateway that is IPv4", in: "jitsu.gw6=10.0.0.1", wantErr: true},
		{name: "ipv6 garbage", in: "jitsu.ip6=banana", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCmdline(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseCmdline(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseCmdline(%q) =\n %+v\nwant\n %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestPrefix(t *testing.T) {
	tests := []struct {
		c    IPConfig
		want string
	}{
		{IPConfig{Client: netip.MustParseAddr("10.0.0.2"), Netmask: netip.MustParseAddr("255.255.255.0")}, "10.0.0.2/24"},
		{IPConfig{Client: netip.MustParseAddr("10.0.0.2")}, "10.0.0.2/32"},
		{IPConfig{Client: netip.MustParseAddr("10.0.0.2"), Netmask: netip.MustParseAddr("0.0.0.0")}, "10.0.0.2/0"},
	}
	for _, tt := range tests {
		if got := tt.c.Prefix().String(); got != tt.want {
			t.Errorf("%+v.Prefix() = %s, want %s", tt.c, got, tt.want)
		}
	}
}
