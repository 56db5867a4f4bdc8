package gateway

import (
	"sync"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/testum/testum/libs/bus"
)

// wsHub knows this gateway's open WebSockets by session and by run, so that
// one subscription per gateway to the broadcasts of libs/bus reaches them
// all. The zero value is ready to use.
type wsHub struct {
	mu        sync.Mutex
	bySession map[uuid.UUID]map[*wsWatch]struct{}
	byRun     map[uuid.UUID]map[*wsWatch]struct{}
}

// wsWatch is one socket's place in the hub: ended is signalled when its
// session ended, final when its run did. Both hold one pending signal.
type wsWatch struct {
	session, run uuid.UUID
	ended, final chan struct{}
}

func (h *wsHub) add(session, run uuid.UUID) *wsWatch {
	w := &wsWatch{session: session, run: run, ended: make(chan struct{}, 1), final: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.bySession == nil {
		h.bySession, h.byRun = map[uuid.UUID]map[*wsWatch]struct{}{}, map[uuid.UUID]map[*wsWatch]struct{}{}
	}
	for m, k := range map[*map[uuid.UUID]map[*wsWatch]struct{}]uuid.UUID{&h.bySession: session, &h.byRun: run} {
		if (*m)[k] == nil {
			(*m)[k] = map[*wsWatch]struct{}{}
		}
		(*m)[k][w] = struct{}{}
	}
	return w
}

func (h *wsHub) remove(w *wsWatch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for m, k := range map[*map[uuid.UUID]map[*wsWatch]struct{}]uuid.UUID{&h.bySession: w.session, &h.byRun: w.run} {
		if delete((*m)[k], w); len((*m)[k]) == 0 {
			delete(*m, k)
		}
	}
}

// sessionsEnded signals the sockets of the ended sessions.
func (h *wsHub) sessionsEnded(ids []uuid.UUID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range ids {
		for w := range h.bySession[id] {
			signal(w.ended)
		}
	}
}

// runFinal signals the sockets watching run.
func (h *wsHub) runFinal(run uuid.UUID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.byRun[run] {
		signal(w.final)
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default: // one pending signal says it all
	}
}

// sessionsEnded is accounts' Config.Ended: it tells every gateway,
// this one included (through NATS, like the others), which sessions ended.
// The hub is told directly too: the broadcast is at most once.
func (g *Gateway) sessionsEnded(ids []uuid.UUID) {
	g.wsHub.sessionsEnded(ids)
	if err := bus.PublishSessionsEnded(g.nc, ids); err != nil {
		g.log.Warn("announcing ended sessions; other gateways' WebSockets close at their next re-check", "err", err)
	}
}

// listenBroadcasts subscribes the hub to the session and run broadcasts;
// the returned function unsubscribes.
func (g *Gateway) listenBroadcasts() (func(), error) {
	sessions, err := g.nc.Subscribe(bus.SessionsEndedSubject, func(m *nats.Msg) {
		s, err := bus.DecodeSessionsEnded(m.Data)
		if err != nil {
			g.log.Warn("malformed sessions-ended broadcast ignored", "err", err)
			return
		}
		g.wsHub.sessionsEnded(s.Sessions)
	})
	if err != nil {
		return nil, err
	}
	final, err := g.nc.Subscribe(bus.RunFinalAll, func(m *nats.Msg) {
		run, err := bus.ParseRunFinalSubject(m.Subject)
		if err != nil {
			g.log.Warn("malformed run-final broadcast ignored", "err", err)
			return
		}
		g.wsHub.runFinal(run)
	})
	if err != nil {
		_ = sessions.Unsubscribe()
		return nil, err
	}
	return func() { _ = sessions.Unsubscribe(); _ = final.Unsubscribe() }, nil
}
