package libvirt

import (
	"context"
	"errors"
	"fmt"

	lv "libvirt.org/go/libvirt"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// mdEntry is the metadata (or the foreign verdict) read for one run of a
// domain: a running domain keeps its UUID and id, and its metadata with
// them, until it stops.
type mdEntry struct {
	uuid string
	id   uint
	md   metadata
	err  error // nil or wrapping hypervisor.ErrForeign
}

// rawState is a domain's libvirt state and reason.
type rawState struct {
	st     lv.DomainState
	reason int
}

// list is List without its deadline. It costs a constant number of
// libvirt calls whatever the number of domains (the listing and the
// states of every domain in one call each), plus the metadata of each
// domain started since the last listing and a save-image check of each
// shut-off one: listing N domains with two calls each queued behind
// libvirt's per-client request limit (max_client_requests, 5), behind
// the create calls of a burst of boots, and took longer than the
// reconciler's deadline at 100 to 200 running domains.
func (h *Hypervisor) list(ctx context.Context) ([]hypervisor.Domain, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	conn, err := h.acquire()
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	defer release(conn)
	doms, err := conn.ListAllDomains(0)
	if err != nil {
		return nil, h.wrap("list", "domains", err)
	}
	states := bulkStates(conn) // nil: read one by one
	seen := make(map[string]bool, len(doms))
	var out []hypervisor.Domain
	for i := range doms {
		d := &doms[i]
		name, nerr := d.GetName()
		seen[name] = true
		md, merr := h.listMetadata(d, name)
		var st hypervisor.State
		var serr error
		if rs, ok := states[name]; ok && nerr == nil {
			st, serr = stateFrom(d, rs.st, rs.reason)
		} else {
			st, serr = domainState(d)
		}
		_ = d.Free()
		if nerr != nil || merr != nil || serr != nil {
			// Foreign, or gone since it was listed.
			continue
		}
		info := h.remember(name, md)
		h.mu.Lock()
		dom := hypervisor.Domain{Name: name, State: st, MAC: info.mac, Started: info.started}
		h.mu.Unlock()
		out = append(out, dom)
	}
	h.mu.Lock()
	for name := range h.mdCache { // bounded by the domains libvirt has
		if !seen[name] {
			delete(h.mdCache, name)
		}
	}
	h.mu.Unlock()
	return out, nil
}

// bulkStates returns every domain's state by name in one call, nil if the
// driver cannot.
func bulkStates(conn *lv.Connect) map[string]rawState {
	recs, err := conn.GetAllDomainStats(nil, lv.DOMAIN_STATS_STATE, 0)
	if err != nil {
		return nil
	}
	out := make(map[string]rawState, len(recs))
	for _, r := range recs {
		name, err := r.Domain.GetName()
		_ = r.Domain.Free()
		if err != nil || r.State == nil || !r.State.StateSet {
			continue
		}
		out[name] = rawState{st: r.State.State, reason: r.State.Reason}
	}
	return out
}

// listMetadata returns jitsu's metadata of d, read once per run of a
// running domain (its UUID and id: both local to the domain handle, no
// call) and at every listing of one that is not running.
func (h *Hypervisor) listMetadata(d *lv.Domain, name string) (metadata, error) {
	uuid, uerr := d.GetUUIDString()
	id, ierr := d.GetID()
	running := uerr == nil && ierr == nil && id != 0 && id != ^uint(0)
	if running {
		h.mu.Lock()
		e, ok := h.mdCache[name]
		h.mu.Unlock()
		if ok && e.uuid == uuid && e.id == id {
			return e.md, e.err
		}
	}
	md, err := h.jitsuMetadata(d)
	if running && (err == nil || errors.Is(err, hypervisor.ErrForeign)) {
		h.mu.Lock()
		h.mdCache[name] = mdEntry{uuid: uuid, id: id, md: md, err: err}
		h.mu.Unlock()
	}
	return md, err
}
