package clocktest

import (
	"testing"
	"time"
)

func TestFakeClockOrder(t *testing.T) {
	clk := NewFakeClock(time.Unix(0, 0))
	var got []int
	clk.AfterFunc(2*time.Second, func() { got = append(got, 2) })
	clk.AfterFunc(time.Second, func() { got = append(got, 1) })
	stopped := clk.AfterFunc(time.Second, func() { got = append(got, 99) })
	if !stopped.Stop() {
		t.Fatal("Stop of a pending timer reported false")
	}
	clk.Advance(1500 * time.Millisecond)
	if len(got) != 1 || got[0] != 1 {
		t.Fatalf("after 1.5s: %v", got)
	}
	clk.Advance(time.Second)
	if len(got) != 2 || got[1] != 2 || clk.Now() != time.Unix(2, 5e8) {
		t.Fatalf("after 2.5s: %v at %v", got, clk.Now())
	}
}
