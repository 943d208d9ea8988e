// Command tenantry-helmd runs `helm upgrade --install` through Helm's own Go SDK
// (helm.sh/helm/v4/pkg/action) for a long-lived caller: the Tenantry deployer.
//
// One process serves many releases, several at once: it saves what the helm CLI pays on
// every run (the process start, reading the kubeconfig, API discovery) by keeping one
// client per cluster, namespace and identity. The semantics are the CLI's: the same
// actions with the same defaults as `helm upgrade --install --wait [--rollback-on-failure]`.
//
// Protocol: one JSON object per line on standard input, one per line on standard output.
//
//	{"id": 1, "op": "upgrade", "kubeconfig": "...", "context": "", "namespace": "payments",
//	 "asUser": "system:serviceaccount:payments:tenantry-deployer", "asGroups": [],
//	 "release": "api", "chart": "/tmp/api-1.4.0.tgz", "values": {}, "wait": true,
//	 "timeoutS": 300, "rollbackOnFailure": true}
//	{"id": 2, "op": "cancel", "target": 1}    stops request 1 (as if its helm were stopped)
//
// Answers: {"id": 1, "release": {"name", "namespace", "version", "info": {"status"},
// "chart": {"metadata": {"name", "version", "appVersion"}}}} or {"id": 1, "error": "..."},
// the error worded as the helm CLI words it. Standard input closing ends the process
// after the requests in flight.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/rest"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/loader"
	"helm.sh/helm/v4/pkg/kube"
	ri "helm.sh/helm/v4/pkg/release"
	rcommon "helm.sh/helm/v4/pkg/release/common"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage/driver"
)

type request struct {
	ID                int            `json:"id"`
	Op                string         `json:"op"`
	Target            int            `json:"target"`
	Kubeconfig        string         `json:"kubeconfig"`
	Context           string         `json:"context"`
	Namespace         string         `json:"namespace"`
	AsUser            string         `json:"asUser"`
	AsGroups          []string       `json:"asGroups"`
	Release           string         `json:"release"`
	Chart             string         `json:"chart"`
	Values            map[string]any `json:"values"`
	Wait              bool           `json:"wait"`
	TimeoutS          float64        `json:"timeoutS"`
	RollbackOnFailure bool           `json:"rollbackOnFailure"`
}

type metadata struct {
	Name       string `json:"name"`
	Version    string `json:"version"`
	AppVersion string `json:"appVersion"`
}

type released struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Version   int    `json:"version"`
	Info      struct {
		Status string `json:"status"`
	} `json:"info"`
	Chart struct {
		Metadata metadata `json:"metadata"`
	} `json:"chart"`
}

type answer struct {
	ID      int       `json:"id"`
	Release *released `json:"release,omitempty"`
	Error   string    `json:"error,omitempty"`
	Version string    `json:"version,omitempty"`
}

// server holds the clients it made (one per cluster, namespace and identity: each keeps
// its discovery and REST mapping) and the cancel function of every request in flight.
type server struct {
	out     *json.Encoder
	outLock sync.Mutex

	lock    sync.Mutex
	getters map[string]*genericclioptions.ConfigFlags
	running map[int]context.CancelFunc
}

func (s *server) reply(a answer) {
	s.outLock.Lock()
	defer s.outLock.Unlock()
	if err := s.out.Encode(a); err != nil {
		slog.Error("cannot answer", "error", err)
		os.Exit(1)
	}
}

func (s *server) getter(r *request) *genericclioptions.ConfigFlags {
	key := strings.Join([]string{r.Kubeconfig, r.Context, r.Namespace, r.AsUser,
		strings.Join(r.AsGroups, ",")}, "\x00")
	s.lock.Lock()
	defer s.lock.Unlock()
	if found, ok := s.getters[key]; ok {
		return found
	}
	flags := genericclioptions.NewConfigFlags(false)
	kubeconfig, kubeContext, namespace := r.Kubeconfig, r.Context, r.Namespace
	user, groups := r.AsUser, append([]string{}, r.AsGroups...)
	flags.KubeConfig, flags.Context, flags.Namespace = &kubeconfig, &kubeContext, &namespace
	flags.Impersonate, flags.ImpersonateGroup = &user, &groups
	// Discovery is kept in this process's memory, never in a shared disk cache.
	noCache := ""
	flags.CacheDir = &noCache
	flags.WrapConfigFn = func(config *rest.Config) *rest.Config {
		config.Burst = 100 // the helm CLI's default
		return config
	}
	s.getters[key] = flags
	return flags
}

func (s *server) start(r request) {
	ctx, cancel := context.WithCancel(context.Background())
	s.lock.Lock()
	s.running[r.ID] = cancel
	s.lock.Unlock()
	defer func() {
		s.lock.Lock()
		delete(s.running, r.ID)
		s.lock.Unlock()
		cancel()
	}()
	rel, err := s.upgradeInstall(ctx, &r)
	if err != nil {
		s.reply(answer{ID: r.ID, Error: err.Error()})
		return
	}
	s.reply(answer{ID: r.ID, Release: rel})
}

func (s *server) cancel(target int) {
	s.lock.Lock()
	defer s.lock.Unlock()
	if cancel, ok := s.running[target]; ok {
		cancel()
	}
}

// upgradeInstall is `helm upgrade --install` as the CLI does it (pkg/cmd/upgrade.go):
// install when the release has no history or was uninstalled, else upgrade.
func (s *server) upgradeInstall(ctx context.Context, r *request) (*released, error) {
	cfg := action.NewConfiguration()
	if err := cfg.Init(s.getter(r), r.Namespace, "secret"); err != nil {
		return nil, err
	}
	ch, err := loader.Load(r.Chart)
	if err != nil {
		return nil, err
	}
	timeout := time.Duration(r.TimeoutS * float64(time.Second))
	strategy := kube.HookOnlyStrategy
	if r.Wait || r.RollbackOnFailure {
		strategy = kube.StatusWatcherStrategy
	}
	// The CLI's own default for every wait (pkg/cmd/flags.go).
	waitOptions := []kube.WaitOption{kube.WithStatusComputeWorkers(8)}
	values := r.Values
	if values == nil {
		values = map[string]any{}
	}

	// The objects are validated by the API server (every apply asks for strict field
	// validation, whatever this flag says). What the flag turns off is the client's check
	// that the server supports that parameter: a parse of the group's whole OpenAPI v3
	// document for every object of every release, two thirds of this helper's CPU.
	const skipClientSchemaCheck = true

	history := action.NewHistory(cfg)
	history.Max = 1
	versions, err := history.Run(r.Release)
	if errors.Is(err, driver.ErrReleaseNotFound) || uninstalled(versions) {
		install := action.NewInstall(cfg)
		install.ReleaseName = r.Release
		install.Namespace = r.Namespace
		install.Timeout = timeout
		install.WaitStrategy = strategy
		install.WaitOptions = waitOptions
		install.RollbackOnFailure = r.RollbackOnFailure
		install.Replace = uninstalled(versions)
		install.DisableOpenAPIValidation = skipClientSchemaCheck
		rel, err := install.RunWithContext(ctx, ch, values)
		if err != nil {
			return nil, fmt.Errorf("INSTALLATION FAILED: %w", err)
		}
		return summary(rel)
	} else if err != nil {
		return nil, err
	}
	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace = r.Namespace
	upgrade.Timeout = timeout
	upgrade.WaitStrategy = strategy
	upgrade.WaitOptions = waitOptions
	upgrade.RollbackOnFailure = r.RollbackOnFailure
	upgrade.DisableOpenAPIValidation = skipClientSchemaCheck
	upgrade.MaxHistory = 10 // the CLI's default (--history-max): older revisions are pruned
	rel, err := upgrade.RunWithContext(ctx, r.Release, ch, values)
	if err != nil {
		return nil, fmt.Errorf("UPGRADE FAILED: %w", err)
	}
	return summary(rel)
}

func uninstalled(versions []ri.Releaser) bool {
	if len(versions) == 0 {
		return false
	}
	last, ok := versions[len(versions)-1].(*releasev1.Release)
	return ok && last.Info != nil && last.Info.Status == rcommon.StatusUninstalled
}

func summary(rel ri.Releaser) (*released, error) {
	r, ok := rel.(*releasev1.Release)
	if !ok {
		return nil, fmt.Errorf("unsupported release type: %T", rel)
	}
	out := &released{Name: r.Name, Namespace: r.Namespace, Version: r.Version}
	if r.Info != nil {
		out.Info.Status = r.Info.Status.String()
	}
	if r.Chart != nil && r.Chart.Metadata != nil {
		m := r.Chart.Metadata
		out.Chart.Metadata = metadata{Name: m.Name, Version: m.Version, AppVersion: m.AppVersion}
	}
	return out, nil
}

func helmVersion() string {
	return common.DefaultCapabilities.HelmVersion.Version
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Printf("tenantry-helmd (helm %s)\n", helmVersion())
		return
	}
	if len(os.Args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: tenantry-helmd [--version]  (requests on standard input)")
		os.Exit(2)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	// Where its CPU goes, for the benchmarks: a pprof CPU profile written on exit.
	if path := os.Getenv("TENANTRY_HELMD_CPUPROFILE"); path != "" {
		out, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(out); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer func() {
			pprof.StopCPUProfile()
			out.Close()
		}()
	}
	// Server-side apply records who owns each field: the helm CLI's name, so the CLI and
	// this helper can take turns on one release (a rollback by the CLI, say) without
	// conflicts.
	kube.ManagedFieldsManager = "helm"
	s := &server{
		out:     json.NewEncoder(os.Stdout),
		getters: map[string]*genericclioptions.ConfigFlags{},
		running: map[int]context.CancelFunc{},
	}
	var inFlight sync.WaitGroup
	lines := bufio.NewScanner(os.Stdin)
	lines.Buffer(make([]byte, 1<<20), 16<<20)
	for lines.Scan() {
		var r request
		if err := json.Unmarshal(lines.Bytes(), &r); err != nil {
			s.reply(answer{ID: r.ID, Error: fmt.Sprintf("not a request: %v", err)})
			continue
		}
		switch r.Op {
		case "upgrade":
			inFlight.Add(1)
			go func() {
				defer inFlight.Done()
				s.start(r)
			}()
		case "cancel":
			s.cancel(r.Target)
		case "version":
			s.reply(answer{ID: r.ID, Version: helmVersion()})
		default:
			s.reply(answer{ID: r.ID, Error: fmt.Sprintf("unknown op %q", r.Op)})
		}
	}
	inFlight.Wait()
}
