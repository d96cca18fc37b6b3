// Server-side paging of RetrievePropertiesEx, as vCenter does it.
package main

import (
	"net/http"
	"slices"
	"strconv"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	// defaultPageSize is vCenter's own limit: RetrievePropertiesEx answers at
	// most 100 objects and a token for the rest, whatever the client asks.
	defaultPageSize = 100
	// maxPendingPerSession bounds the unread results a session may leave on
	// the server; a new one beyond it drops that session's oldest.
	maxPendingPerSession = 64
)

// pager holds the results of RetrievePropertiesEx calls not yet read to the
// end. vCenter pages every answer at its own limit ("PropertyCollector
// policy may still limit the number of objects") and a token may be used
// once, by the session and the collector that received it. vcsim pages only
// when the client asks, keeps every token in one process-wide map (any
// session may continue another's, a token survives a reset, and an
// abandoned one is never freed) and has no CancelRetrievePropertiesEx.
type pager struct {
	mu      sync.Mutex
	size    int32 // objects per answer
	next    int64
	pending map[string]*pendingResult // by token
}

type pendingResult struct {
	session   string
	collector types.ManagedObjectReference
	objects   []types.ObjectContent
	size      int32
	seq       int64
}

func newPager(size int) *pager {
	if size < 1 {
		size = defaultPageSize
	}
	return &pager{size: int32(size), pending: map[string]*pendingResult{}}
}

func (p *pager) pageSize() int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.size
}

func (p *pager) setPageSize(n int32) {
	p.mu.Lock()
	p.size = n
	p.mu.Unlock()
}

// page cuts objects to one answer of at most size; the rest is kept under
// the returned token ("" when nothing is left).
func (p *pager) page(session string, collector types.ManagedObjectReference, objects []types.ObjectContent,
	size int32) ([]types.ObjectContent, string) {
	if int32(len(objects)) <= size {
		return objects, ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	token := strconv.FormatInt(p.next, 10)
	p.pending[token] = &pendingResult{session: session, collector: collector, objects: objects[size:], size: size, seq: p.next}
	var mine []string
	for t, r := range p.pending {
		if r.session == session {
			mine = append(mine, t)
		}
	}
	if len(mine) > maxPendingPerSession {
		slices.SortFunc(mine, func(a, b string) int { return int(p.pending[a].seq - p.pending[b].seq) })
		for _, t := range mine[:len(mine)-maxPendingPerSession] {
			delete(p.pending, t)
		}
	}
	return objects[:size], token
}

// take removes and returns the result a token names, if it belongs to this
// session and collector.
func (p *pager) take(token, session string, collector types.ManagedObjectReference) *pendingResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.pending[token]
	if r == nil || r.session != session || r.collector != collector {
		return nil
	}
	delete(p.pending, token)
	return r
}

// drop forgets the results of ended sessions (live: the sessions that are
// left), or of one collector of a session.
func (p *pager) drop(keep func(*pendingResult) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for t, r := range p.pending {
		if !keep(r) {
			delete(p.pending, t)
		}
	}
}

// count is the number of results waiting to be read.
func (p *pager) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending)
}

// collector adds vCenter's paging and CancelRetrievePropertiesEx to a
// session's PropertyCollector (the per-session instance of the singleton,
// or one made by CreatePropertyCollector); everything else is vcsim's.
type collector struct {
	*simulator.PropertyCollector
	w *world
}

// asCollector is vcsim's PropertyCollector inside obj, wrapped or not.
func asCollector(obj any) (*simulator.PropertyCollector, bool) {
	switch pc := obj.(type) {
	case *simulator.PropertyCollector:
		return pc, true
	case *collector:
		return pc.PropertyCollector, true
	}
	return nil, false
}

// wrapCollector puts a paging wrapper around the session's instance of a
// PropertyCollector, once.
func (e *extensions) wrapCollector(ctx *simulator.Context, ref types.ManagedObjectReference) {
	if _, ok := ctx.Session.Get(ref).(*simulator.PropertyCollector); ok { // makes the session's instance
		e.mu.Lock()
		defer e.mu.Unlock()
		if pc, ok := ctx.Session.Registry.Get(ref).(*simulator.PropertyCollector); ok {
			ctx.Session.Registry.Put(&collector{pc, e.w})
		}
	}
}

func (c *collector) RetrievePropertiesEx(ctx *simulator.Context, r *types.RetrievePropertiesEx) soap.HasFault {
	if r.Options.MaxObjects < 0 {
		return &methods.RetrievePropertiesExBody{Fault_: simulator.Fault("maxObjects must be positive",
			&types.InvalidArgument{InvalidProperty: "maxObjects"})}
	}
	size := c.w.pager.pageSize()
	if m := r.Options.MaxObjects; m > 0 && m < size {
		size = m
	}
	all := *r
	all.Options.MaxObjects = 0 // vcsim returns everything; fakevc pages it
	res := c.PropertyCollector.RetrievePropertiesEx(ctx, &all)
	if body, ok := res.(*methods.RetrievePropertiesExBody); ok && body.Res != nil && body.Res.Returnval != nil {
		rv := body.Res.Returnval
		rv.Objects, rv.Token = c.w.pager.page(ctx.Session.Key, c.Self, rv.Objects, size)
	}
	return res
}

func (c *collector) ContinueRetrievePropertiesEx(ctx *simulator.Context, r *types.ContinueRetrievePropertiesEx) soap.HasFault {
	p := c.w.pager.take(r.Token, ctx.Session.Key, c.Self)
	if p == nil {
		return &methods.ContinueRetrievePropertiesExBody{Fault_: simulator.Fault(
			"the token is not one this collector returned in this session, or it was used already",
			&types.InvalidProperty{Name: "token"})}
	}
	var res types.RetrieveResult
	res.Objects, res.Token = c.w.pager.page(p.session, p.collector, p.objects, p.size)
	return &methods.ContinueRetrievePropertiesExBody{Res: &types.ContinueRetrievePropertiesExResponse{Returnval: res}}
}

// CancelRetrievePropertiesEx discards the rest of a paged result (vcsim
// lacks the method).
func (c *collector) CancelRetrievePropertiesEx(ctx *simulator.Context, r *types.CancelRetrievePropertiesEx) soap.HasFault {
	if c.w.pager.take(r.Token, ctx.Session.Key, c.Self) == nil {
		return &methods.CancelRetrievePropertiesExBody{Fault_: simulator.Fault(
			"the token is not one this collector returned in this session, or it was used already",
			&types.InvalidProperty{Name: "token"})}
	}
	return &methods.CancelRetrievePropertiesExBody{Res: &types.CancelRetrievePropertiesExResponse{}}
}

// apiPaging shows the page size and how many paged results wait to be read.
func (s *fakevc) apiPaging(*http.Request, string) (any, error) {
	w := s.world.Load()
	return map[string]any{"page_size": w.pager.pageSize(), "pending": w.pager.count()}, nil
}

// apiSetPaging sets the page size until the next reset (which restores the
// topology's).
func (s *fakevc) apiSetPaging(r *http.Request, _ string) (any, error) {
	var req struct {
		PageSize *int64 `json:"page_size"`
	}
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.PageSize == nil || *req.PageSize < 1 || *req.PageSize > 1_000_000 {
		return nil, badRequest(`"page_size": expected a whole number from 1 to 1000000 (objects per RetrievePropertiesEx answer)`)
	}
	s.world.Load().pager.setPageSize(int32(*req.PageSize))
	return nil, nil
}
