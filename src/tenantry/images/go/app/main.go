// Command app is the application the example services run on the real local
// nodes: an HTTP server that answers users with its version, reports Prometheus
// metrics, and can be told (by its chart's values, through the environment) to be
// a bad release that answers errors or slowly.
//
//	app                 serve on :$PORT (8080 if unset)
//	app -exit CODE      exit at once with CODE (a container that crashes)
//	app -eat-memory     allocate until the kernel kills it (an OOM kill)
//	app -self-test      start the app on a loopback port, check that /ready and /
//	                    answer with its version, exit 0 (passed) or 1 (a `helm test`)
//
// Environment:
//
//	APP_SERVICE       the service's name, in answers and metrics
//	APP_VERSION       the version it answers with (the chart's)
//	APP_ERROR_RATE    fraction of user requests answered 500 (0 to 1)
//	APP_LATENCY_MS    extra time before each user request is answered
//	APP_READY         "false": /healthz and /ready answer 503, the pod never turns ready
//	APP_DRAIN_S       on SIGTERM, seconds to keep serving with /ready at 503
//	                  before closing (2 by default), so the endpoints it leaves
//	                  stop sending before it stops answering
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var buckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0}

type stats struct {
	mu       sync.Mutex
	requests map[int]int
	counts   []int
	sum      float64
	count    int
}

func (s *stats) record(code int, seconds float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests[code]++
	for i, bound := range buckets {
		if seconds <= bound {
			s.counts[i]++
		}
	}
	s.sum += seconds
	s.count++
}

func (s *stats) render(labels string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	b.WriteString("# TYPE http_requests_total counter\n")
	codes := make([]int, 0, len(s.requests))
	for code := range s.requests {
		codes = append(codes, code)
	}
	sort.Ints(codes)
	for _, code := range codes {
		fmt.Fprintf(&b, "http_requests_total{%s,code=\"%d\"} %d\n", labels, code, s.requests[code])
	}
	b.WriteString("# TYPE http_request_duration_seconds histogram\n")
	for i, bound := range buckets {
		fmt.Fprintf(&b, "http_request_duration_seconds_bucket{%s,le=\"%g\"} %d\n", labels, bound, s.counts[i])
	}
	fmt.Fprintf(&b, "http_request_duration_seconds_bucket{%s,le=\"+Inf\"} %d\n", labels, s.count)
	fmt.Fprintf(&b, "http_request_duration_seconds_sum{%s} %g\n", labels, s.sum)
	fmt.Fprintf(&b, "http_request_duration_seconds_count{%s} %d\n", labels, s.count)
	return b.String()
}

func envFloat(name string, fallback float64) float64 {
	raw := os.Getenv(name)
	if raw == "" {
		return fallback
	}
	value, err := strconv.ParseFloat(raw, 64)
	if err != nil {
		log.Fatalf("%s=%q is not a number", name, raw)
	}
	return value
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

func eatMemory() {
	var kept [][]byte
	for {
		chunk := make([]byte, 16<<20)
		for i := range chunk {
			chunk[i] = 1 // touch every page so it is really resident
		}
		kept = append(kept, chunk)
		fmt.Fprintf(os.Stderr, "holding %d MiB\n", len(kept)*16)
	}
}

func main() {
	exitCode := flag.Int("exit", -1, "exit at once with this code instead of serving")
	hungry := flag.Bool("eat-memory", false, "allocate memory until killed")
	selfTest := flag.Bool("self-test", false, "check the app answers, then exit")
	flag.Parse()
	if *exitCode >= 0 {
		fmt.Fprintf(os.Stderr, "exiting with code %d as asked\n", *exitCode)
		os.Exit(*exitCode)
	}
	if *hungry {
		eatMemory()
	}
	service := envOr("APP_SERVICE", "app")
	version := envOr("APP_VERSION", "unknown")
	port := envOr("PORT", "8080")
	errorRate := envFloat("APP_ERROR_RATE", 0)
	latency := time.Duration(envFloat("APP_LATENCY_MS", 0) * float64(time.Millisecond))
	drain := time.Duration(envFloat("APP_DRAIN_S", 2) * float64(time.Second))
	var ready atomic.Bool
	ready.Store(os.Getenv("APP_READY") != "false")
	hostname, _ := os.Hostname()
	labels := fmt.Sprintf("service=%q,version=%q", service, version)
	counted := &stats{requests: map[int]int{}, counts: make([]int, len(buckets))}

	mux := http.NewServeMux()
	health := func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}
	// The platform's base chart probes /ready and /healthz; neither counts as a request.
	mux.HandleFunc("/healthz", health)
	mux.HandleFunc("/ready", health)
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, counted.render(labels))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		started := time.Now()
		time.Sleep(latency)
		code := http.StatusOK
		if rand.Float64() < errorRate {
			code = http.StatusInternalServerError
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, "%s %s on %s\n", service, version, hostname)
		counted.record(code, time.Since(started).Seconds())
	})
	server := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if *selfTest {
		os.Exit(runSelfTest(server, version))
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		// Leave the endpoints first, then stop: requests already routed here are answered.
		ready.Store(false)
		log.Printf("stopping: draining for %s", drain)
		time.Sleep(drain)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = server.Shutdown(ctx)
	}()
	log.Printf("%s %s listening on :%s", service, version, port)
	if err := server.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

// runSelfTest serves on a loopback port and checks the answers a user and a probe get.
func runSelfTest(server *http.Server, version string) int {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "self-test: cannot listen: %v\n", err)
		return 1
	}
	go func() { _ = server.Serve(listener) }()
	base := "http://" + listener.Addr().String()
	client := &http.Client{Timeout: 5 * time.Second}
	for _, check := range []struct{ path, want string }{{"/ready", "ok"}, {"/", version}} {
		response, err := client.Get(base + check.path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "self-test: GET %s: %v\n", check.path, err)
			return 1
		}
		body, _ := io.ReadAll(response.Body)
		response.Body.Close()
		if response.StatusCode != http.StatusOK || !strings.Contains(string(body), check.want) {
			fmt.Fprintf(os.Stderr, "self-test: GET %s answered %d %q, want 200 with %q\n",
				check.path, response.StatusCode, body, check.want)
			return 1
		}
		fmt.Printf("self-test: GET %s: %d %s", check.path, response.StatusCode, body)
	}
	return 0
}
