package dnsserver

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// TestSharedCookieSecret: two jars with one secret (two daemons of an
// anycast set, or one daemon before and after a restart, each with its own
// start time and clock) accept each other's server cookies for their whole
// hour, across a rotation boundary and with clocks a few minutes apart; a
// jar with another secret, or with a random one, does not.
func TestSharedCookieSecret(t *testing.T) {
	secret, _ := hex.DecodeString("e5e973e5a6b2a43f48e7dc849e37bfcf")
	other, _ := hex.DecodeString("00112233445566778899aabbccddeeff")
	boundary := time.Unix(1_700_000_000, 0).Truncate(cookieRotate) // a rotation
	mustJar := func(start time.Time, s []byte) *cookieJar {
		j, err := newCookieJar(start, s)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	a := mustJar(boundary.Add(-50*time.Minute), secret)
	b := mustJar(boundary.Add(-3*time.Minute), secret) // started later: a restart, or a peer
	c := mustJar(boundary.Add(-50*time.Minute), other)
	r := mustJar(boundary.Add(-50*time.Minute), nil)
	client := netip.MustParseAddr("2001:db8::53")
	cc := []byte("clientck")
	for _, tc := range []struct {
		name    string
		madeBy  *cookieJar
		madeAt  time.Duration // from the boundary
		check   *cookieJar
		checkAt time.Duration
		want    int
	}{
		{"same epoch", a, -40 * time.Minute, b, -10 * time.Minute, cookieValid},
		{"made before the rotation, checked after", a, -10 * time.Minute, b, 45 * time.Minute, cookieValid},
		{"made after the rotation, checked by the other", b, 1 * time.Minute, a, 30 * time.Minute, cookieValid},
		{"maker's clock ahead: made in the next epoch", a, 2 * time.Minute, b, -1 * time.Minute, cookieValid},
		{"maker's clock behind: made in the epoch before", b, -1 * time.Minute, a, 2 * time.Minute, cookieValid},
		{"older than an hour", a, -10 * time.Minute, b, 51 * time.Minute, cookieInvalid},
		{"checked by a jar idle since the hour before", b, 59 * time.Minute, a, 118 * time.Minute, cookieValid},
		{"other secret", a, -10 * time.Minute, c, -5 * time.Minute, cookieInvalid},
		{"random secret", a, -10 * time.Minute, r, -5 * time.Minute, cookieInvalid},
		{"random secret's cookie", r, -10 * time.Minute, a, -5 * time.Minute, cookieInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cookie := tc.madeBy.make(nil, cc, client, boundary.Add(tc.madeAt).Unix())
			if got := tc.check.check(cookie, false, client, boundary.Add(tc.checkAt).Unix()); got != tc.want {
				t.Fatalf("check = %s, want %s", cookieStateNames[got], cookieStateNames[tc.want])
			}
		})
	}
}

// TestCookieEpochKeys pins the derivation of the epoch keys from a shared
// secret: jitsu daemons of different versions in one anycast set must
// agree on it (the values were computed by a separate Python SipHash-2-4,
// checked against the SipHash paper's vector). It also checks that the
// key changes at each epoch and that the previous epoch's key is kept.
func TestCookieEpochKeys(t *testing.T) {
	secret, _ := hex.DecodeString("e5e973e5a6b2a43f48e7dc849e37bfcf")
	const e = 472222 // 2023-11-14T22:00Z, the hour of unix time 1.7e9
	j, err := newCookieJar(time.Unix(1_700_000_000, 0), secret)
	if err != nil {
		t.Fatal(err)
	}
	if got := cookieEpoch(1_700_000_000); got != e {
		t.Fatalf("cookieEpoch = %d, want %d", got, e)
	}
	for _, tc := range []struct {
		epoch int64
		want  string
	}{
		{e, "295dc741400f69ef81f8b42bc905f698"},
		{e - 1, "c7d62fa1069d2315ef5e5d5e6d3d043b"},
	} {
		if got := fmt.Sprintf("%016x%016x", j.epochKey(tc.epoch)[0], j.epochKey(tc.epoch)[1]); got != tc.want {
			t.Errorf("K(%d) = %s, want %s", tc.epoch, got, tc.want)
		}
	}
	s := j.keys(1_700_000_000)
	if s.cur != j.epochKey(e) || s.prev != j.epochKey(e-1) || s.cur == s.prev {
		t.Errorf("keys at 1.7e9: cur %x prev %x", s.cur, s.prev)
	}
	if n := j.keys((e + 1) * 3600); n.cur != j.epochKey(e+1) || n.prev != s.cur {
		t.Errorf("keys after the rotation: cur %x prev %x", n.cur, n.prev)
	}
	if _, err := newCookieJar(time.Now(), secret[:8]); err == nil {
		t.Error("a 64-bit secret was accepted")
	}
}

// TestCookieSecretOption: New refuses a secret of the wrong length, and a
// secret with cookies off.
func TestCookieSecretOption(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cookies bool
		secret  []byte
		ok      bool
	}{
		{"shared secret", true, make([]byte, CookieSecretLen), true},
		{"random secret", true, nil, true},
		{"64 bits", true, make([]byte, 8), false},
		{"cookies off", false, make([]byte, CookieSecretLen), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(testConfig(t), Options{Listen: []string{"127.0.0.1:0"}, Summoner: newFakeSummoner(), Cookies: tc.cookies, CookieSecret: tc.secret})
			if (err == nil) != tc.ok {
				t.Fatalf("New: %v, want ok = %v", err, tc.ok)
			}
		})
	}
}
