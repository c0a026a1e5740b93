package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"istio.io/istio/pilot/test/xds"
)

// failer is the test.Failer the fake discovery server wants: any failure ends the process.
type failer struct {
	mu       sync.Mutex
	cleanups []func()
	tmp      string
}

func (f *failer) Fail()             { f.FailNow() }
func (f *failer) FailNow()          { f.runCleanups(); os.Exit(1) }
func (f *failer) Fatal(args ...any) { fmt.Fprintln(os.Stderr, args...); f.FailNow() }
func (f *failer) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	f.FailNow()
}
func (f *failer) Log(args ...any)                 { fmt.Fprintln(os.Stderr, args...) }
func (f *failer) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (f *failer) Helper()                         {}
func (f *failer) Skip(args ...any)                { f.Fatal(append([]any{"skip:"}, args...)...) }
func (f *failer) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

func (f *failer) TempDir() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tmp == "" {
		d, err := os.MkdirTemp("", "istio-xds-")
		if err != nil {
			panic(err)
		}
		f.tmp = d
	}
	return f.tmp
}

func (f *failer) runCleanups() {
	f.mu.Lock()
	fns := f.cleanups
	f.cleanups = nil
	f.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
	if f.tmp != "" {
		_ = os.RemoveAll(f.tmp)
	}
}

// serverFlags are the flags that load configuration (serve and dump).
type serverFlags struct {
	configs multiFlag
	mesh    string
	podIPs  multiFlag
}

func (s *serverFlags) register(fs *flag.FlagSet) {
	fs.Var(&s.configs, "config", "a YAML file or a directory of them (repeatable; extra arguments count too)")
	fs.StringVar(&s.mesh, "mesh", "", "a mesh config YAML file (default: Istio's defaults; an IstioOperator in --config merges its meshConfig)")
	fs.Var(&s.podIPs, "pod-ip", "DEPLOYMENT=IP: create the Pod of that Deployment with that IP (repeatable)")
}

// startServer builds Istio's discovery server over the loaded configuration, serving ADS on lis.
func startServer(f *failer, sf *serverFlags, extra []string, lis net.Listener) (*xds.FakeDiscoveryServer, error) {
	ips, err := parsePairs(sf.podIPs)
	if err != nil {
		return nil, err
	}
	in, err := loadInputs(append(append([]string{}, sf.configs...), extra...), sf.mesh, ips)
	if err != nil {
		return nil, err
	}
	opts := xds.FakeOptions{
		ConfigString:           strings.Join(in.istio, "\n---\n"),
		KubernetesObjectString: strings.Join(in.kube, "\n---\n"),
		MeshConfig:             in.mesh,
		ListenerBuilder:        func() (net.Listener, error) { return lis, nil },
	}
	return xds.NewFakeDiscoveryServer(f, opts), nil
}

func cmdServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	var sf serverFlags
	sf.register(fs)
	version := fs.String("istio-version", "", "the Istio minor release expected (this binary is "+istioVersion+")")
	listen := fs.String("listen", "127.0.0.1:15010", "ADS address (unauthenticated gRPC); loopback only")
	sdsListen := fs.String("sds-listen", "", "also serve SDS (the workload certificate istio-agent would serve) here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *version != "" && *version != istioVersion {
		return fmt.Errorf("this binary is built from Istio %s, not %s", istioVersion, *version)
	}
	for _, a := range []string{*listen, *sdsListen} {
		if err := loopbackOnly(a); err != nil {
			return err
		}
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	f := &failer{}
	defer f.runCleanups()
	if *sdsListen != "" {
		stop, err := serveSDS(*sdsListen)
		if err != nil {
			return err
		}
		f.Cleanup(stop)
	}
	if _, err := startServer(f, &sf, fs.Args(), lis); err != nil {
		return err
	}
	fmt.Printf("istio-xds %s serving ADS on %s\n", istioVersion, lis.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return nil
}

// loopbackOnly refuses an address that is not on a loopback interface (the server is unauthenticated).
func loopbackOnly(addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%s is not a loopback address; this server has no authentication", addr)
	}
	return nil
}
