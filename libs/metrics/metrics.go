// Package metrics owns testum's Prometheus metrics: every metric's name,
// help text and labels are defined here once, in one registry per process,
// which the gateway's /metrics and the executor's ops listener serve in the
// Prometheus text format. Instrumented code only increments, sets and
// observes the fields of Metrics.
package metrics

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/testum"
)

// Label values of testum_executor_slots.
const (
	SlotsTotal = "total"
	SlotsInUse = "in_use"
)

// Label values of testum_reaper_actions_total.
const (
	ReapHostLost          = "host_lost"          // a dead executor's host ended lost
	ReapHostRequeued      = "host_requeued"      // a lost host queued again (retry_lost)
	ReapRunRepublished    = "run_republished"    // a run no live executor coordinated, published again
	ReapTaskUndeliverable = "task_undeliverable" // a task past its delivery limit, its host ended lost
)

// ReapActions lists the label values of testum_reaper_actions_total.
var ReapActions = []string{ReapHostLost, ReapHostRequeued, ReapRunRepublished, ReapTaskUndeliverable}

// scrapeTimeout bounds a value read from PostgreSQL or NATS during a scrape.
const scrapeTimeout = 3 * time.Second

// Metrics are the metrics of one process. Build them with New; every field
// is ready to use.
type Metrics struct {
	reg *prometheus.Registry

	// Executor.
	ExecutorSlots        *prometheus.GaugeVec   // state: total | in_use
	HostsTotal           *prometheus.CounterVec // state: the final host state
	SSHHandshake         prometheus.Histogram   // successful dials: TCP, handshake and login of every hop
	SSHHandshakeFailures *prometheus.CounterVec // class: sshx.FailureClass
	SSHHandshakeWindow   prometheus.Gauge       // the executors' adaptive bounds of handshakes in flight, summed
	SSHHandshakesActive  prometheus.Gauge
	SSHHandshakeRetries  prometheus.Counter
	CommandDuration      prometheus.Histogram
	OutputBytes          prometheus.Counter
	PublishDuration      prometheus.Histogram
	PublishRetries       prometheus.Counter
	CoordinatorRuns      prometheus.Gauge
	ReaperActions        *prometheus.CounterVec // action: ReapActions

	// Gateway.
	HTTPRequests     *prometheus.CounterVec   // route, status
	HTTPDuration     *prometheus.HistogramVec // route
	WebSocketClients prometheus.Gauge
	LoginFailures    prometheus.Counter

	tasksPending   *readGauge
	sessionsActive *readGauge
}

// New builds the metrics of a process, with the Go runtime and process
// collectors, in a registry of their own.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		ExecutorSlots: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "testum_executor_slots",
			Help: "Host session slots of the executors in this process: total, and in_use by a host."}, []string{"state"}),
		HostsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "testum_hosts_total",
			Help: "Hosts that reached a final state, recorded by this process, by state."}, []string{"state"}),
		SSHHandshake: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "testum_ssh_handshake_seconds",
			Help:    "Time of a successful SSH dial: TCP connect, handshake, host key check and login of every hop.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
		SSHHandshakeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "testum_ssh_handshake_failures_total",
			Help: "SSH dials that failed, by class: refused, timeout, auth, host_key, reset, other."}, []string{"class"}),
		SSHHandshakeWindow: prometheus.NewGauge(prometheus.GaugeOpts{Name: "testum_ssh_handshake_window",
			Help: "SSH handshakes the executors in this process allow in flight now: their AIMD windows, at most TESTUM_MAX_HANDSHAKES each."}),
		SSHHandshakesActive: prometheus.NewGauge(prometheus.GaugeOpts{Name: "testum_ssh_handshakes_in_flight",
			Help: "SSH handshakes in flight now in this process."}),
		SSHHandshakeRetries: prometheus.NewCounter(prometheus.CounterOpts{Name: "testum_ssh_handshake_retries_total",
			Help: "SSH dials made again after the host reset or closed the connection before authentication completed."}),
		CommandDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "testum_command_duration_seconds",
			Help:    "Time from a command's start on a host to its end, whatever the outcome.",
			Buckets: prometheus.ExponentialBuckets(0.05, 4, 10)}),
		OutputBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "testum_output_bytes_total",
			Help: "Output bytes accepted from hosts (up to each host's cap)."}),
		PublishDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "testum_jetstream_publish_duration_seconds",
			Help:    "Time of one JetStream publish until its ack (tasks, runs, transcript messages), failed tries included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		PublishRetries: prometheus.NewCounter(prometheus.CounterOpts{Name: "testum_jetstream_publish_retries_total",
			Help: "Transcript messages published again after a failed JetStream publish."}),
		CoordinatorRuns: prometheus.NewGauge(prometheus.GaugeOpts{Name: "testum_coordinator_runs_active",
			Help: "Runs coordinated by this process now."}),
		ReaperActions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "testum_reaper_actions_total",
			Help: "What the reaper did, by action: host_lost, host_requeued, run_republished, task_undeliverable."}, []string{"action"}),

		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "testum_http_requests_total",
			Help: "HTTP requests answered by the gateway, by route pattern and status."}, []string{"route", "status"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "testum_http_request_duration_seconds",
			Help: "Time to answer an HTTP request, by route pattern (a WebSocket: its upgrade).", Buckets: prometheus.DefBuckets},
			[]string{"route"}),
		WebSocketClients: prometheus.NewGauge(prometheus.GaugeOpts{Name: "testum_websocket_clients",
			Help: "WebSocket clients connected to this gateway."}),
		LoginFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "testum_login_failures_total",
			Help: "Logins refused for a wrong username or master key."}),

		tasksPending: &readGauge{desc: prometheus.NewDesc("testum_tasks_pending",
			"Host tasks in the work queue not yet delivered to an executor (the consumer's pending count, read at scrape).", nil, nil)},
		sessionsActive: &readGauge{desc: prometheus.NewDesc("testum_sessions_active",
			"Sessions active now, across the cluster (read from PostgreSQL at scrape).", nil, nil)},
	}
	// Every label value known in advance exists from the start, at zero, so
	// that rates and absences read right from the first scrape.
	for _, s := range []string{SlotsTotal, SlotsInUse} {
		m.ExecutorSlots.WithLabelValues(s)
	}
	for _, s := range testum.HostStates {
		if s.Final() {
			m.HostsTotal.WithLabelValues(string(s))
		}
	}
	for _, c := range sshx.FailureClasses {
		m.SSHHandshakeFailures.WithLabelValues(string(c))
	}
	for _, a := range ReapActions {
		m.ReaperActions.WithLabelValues(a)
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.ExecutorSlots, m.HostsTotal, m.SSHHandshake, m.SSHHandshakeFailures, m.SSHHandshakeWindow,
		m.SSHHandshakesActive, m.SSHHandshakeRetries, m.CommandDuration, m.OutputBytes,
		m.PublishDuration, m.PublishRetries, m.CoordinatorRuns, m.ReaperActions,
		m.HTTPRequests, m.HTTPDuration, m.WebSocketClients, m.LoginFailures,
		m.tasksPending, m.sessionsActive,
	)
	return m
}

// Handler serves the metrics in the Prometheus exposition format. It does
// no authentication: the caller does (TokenMatches, or a session).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Gatherer is the registry, for tests that read values directly.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// ReadTasksPending sets where testum_tasks_pending is read from at each
// scrape; without a reader (a gateway-only process) the metric is absent.
func (m *Metrics) ReadTasksPending(read func(context.Context) (float64, error)) {
	m.tasksPending.set(read)
}

// ReadSessionsActive sets where testum_sessions_active is read from at
// each scrape; without a reader (an executor-only process) it is absent.
func (m *Metrics) ReadSessionsActive(read func(context.Context) (float64, error)) {
	m.sessionsActive.set(read)
}

// TokenMatches reports whether a presented bearer token is the configured
// metrics token, in constant time. An empty configured token matches
// nothing: token scrapes are then off.
func TokenMatches(configured, presented string) bool {
	if configured == "" {
		return false
	}
	want, got := sha256.Sum256([]byte(configured)), sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(want[:], got[:]) == 1
}

// readGauge is a gauge whose value is read when scraped; a failed read
// leaves it out of that scrape rather than report a stale or false value.
type readGauge struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	read func(context.Context) (float64, error)
}

func (g *readGauge) set(read func(context.Context) (float64, error)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.read = read
}

func (g *readGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *readGauge) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	read := g.read
	g.mu.Unlock()
	if read == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	v, err := read(ctx)
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v)
}
