package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"istio.io/istio/pkg/config/mesh"
)

const (
	typeCluster  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	typeListener = "type.googleapis.com/envoy.config.listener.v3.Listener"
	typeRoute    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	typeECDS     = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
)

// cmdDump starts the server on an ephemeral loopback port, connects to it over ADS as the node Envoy
// would be (the node of `istio-xds bootstrap`), and prints what Istio sends: clusters, listeners,
// the routes and extension configs those name.
func cmdDump(args []string) error {
	fs := flag.NewFlagSet("dump", flag.ExitOnError)
	var sf serverFlags
	var nf nodeFlags
	sf.register(fs)
	nf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := nf.defaults(); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	f := &failer{}
	defer f.runCleanups()
	if _, err := startServer(f, &sf, fs.Args(), lis); err != nil {
		return err
	}
	m := mesh.DefaultMeshConfig()
	if sf.mesh != "" {
		b, err := os.ReadFile(sf.mesh)
		if err != nil {
			return err
		}
		if m, err = mesh.ApplyMeshConfigDefaults(string(b)); err != nil {
			return err
		}
	}
	node, err := nf.node(m, lis.Addr().String())
	if err != nil {
		return err
	}
	boot, err := nf.renderBootstrap(node, lis.Addr().String(), "")
	if err != nil {
		return err
	}
	nodeJSON, _ := json.Marshal(boot["node"])
	var envoyNode core.Node
	if err := protojson.Unmarshal(nodeJSON, &envoyNode); err != nil {
		return fmt.Errorf("the bootstrap's node: %v", err)
	}
	out, err := fetchAll(lis.Addr().String(), &envoyNode)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

type adsClient struct {
	stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *core.Node
	first  bool
}

// get requests one type (all of it, or the names given), ACKs, and returns the resources as JSON.
func (c *adsClient) get(typeURL string, names []string) ([]json.RawMessage, error) {
	req := &discovery.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names}
	if c.first {
		req.Node = c.node
		c.first = false
	}
	if err := c.stream.Send(req); err != nil {
		return nil, err
	}
	resp, err := c.stream.Recv()
	if err != nil {
		return nil, err
	}
	if resp.TypeUrl != typeURL {
		return nil, fmt.Errorf("asked for %s, got %s", typeURL, resp.TypeUrl)
	}
	ack := &discovery.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names, VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce}
	if err := c.stream.Send(ack); err != nil {
		return nil, err
	}
	var out []json.RawMessage
	mo := protojson.MarshalOptions{UseProtoNames: true}
	for _, r := range resp.Resources {
		b, err := mo.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", typeURL, err)
		}
		out = append(out, b)
	}
	return out, nil
}

func fetchAll(addr string, node *core.Node) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	c := &adsClient{stream: stream, node: node, first: true}
	clusters, err := c.get(typeCluster, nil)
	if err != nil {
		return nil, err
	}
	listeners, err := c.get(typeListener, nil)
	if err != nil {
		return nil, err
	}
	routeNames, ecdsNames := map[string]bool{}, map[string]bool{}
	for _, l := range listeners {
		var v any
		_ = json.Unmarshal(l, &v)
		collectNames(v, routeNames, ecdsNames)
	}
	out := map[string]any{"clusters": clusters, "listeners": listeners, "routes": []any{}, "extension_configs": []any{}}
	if len(routeNames) > 0 {
		if out["routes"], err = c.get(typeRoute, sorted(routeNames)); err != nil {
			return nil, err
		}
	}
	if len(ecdsNames) > 0 {
		if out["extension_configs"], err = c.get(typeECDS, sorted(ecdsNames)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// collectNames finds the RDS route names (rds.route_config_name) and the ECDS filter names (a filter
// with config_discovery) in a listener's JSON.
func collectNames(v any, routes, ecds map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		if rds, ok := x["rds"].(map[string]any); ok {
			if n, ok := rds["route_config_name"].(string); ok {
				routes[n] = true
			}
		}
		if _, ok := x["config_discovery"]; ok {
			if n, ok := x["name"].(string); ok {
				ecds[n] = true
			}
		}
		for _, e := range x {
			collectNames(e, routes, ecds)
		}
	case []any:
		for _, e := range x {
			collectNames(e, routes, ecds)
		}
	}
}

func sorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
