package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	meshconfig "istio.io/api/mesh/v1alpha1"
	"istio.io/istio/pkg/bootstrap"
	"istio.io/istio/pkg/config/mesh"
	"istio.io/istio/pkg/model"
)

// nodeFlags describe the proxy: an ingress gateway pod (Istio's "router" node) or a sidecar.
type nodeFlags struct {
	kind        string
	namespace   string
	name        string
	ip          string
	labels      multiFlag
	proxyConfig string
	adminPort   int
	statusPort  int
	promPort    int
	template    string
}

func (n *nodeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&n.kind, "node", "gateway", "gateway (an ingress gateway pod, Istio's router node) or sidecar")
	fs.StringVar(&n.namespace, "namespace", "", "the pod's namespace (default: istio-system for gateway, default for sidecar)")
	fs.StringVar(&n.name, "name", "", "the pod's name (default: istio-ingressgateway-0 / httpbin-0, the Pods --pod-ip creates)")
	fs.StringVar(&n.ip, "ip", "127.0.0.1", "the pod's IP (the --pod-ip of its Deployment)")
	fs.Var(&n.labels, "labels", "the pod's labels k=v,... (default: istio=ingressgateway,app=istio-ingressgateway for gateway, app=httpbin for sidecar)")
	fs.StringVar(&n.proxyConfig, "proxy-config", "", "the pod's proxy.istio.io/config annotation (YAML), merged over the mesh's defaultConfig")
	fs.IntVar(&n.adminPort, "admin-port", 15000, "Envoy's admin port (ProxyConfig.proxyAdminPort)")
	fs.IntVar(&n.statusPort, "status-port", 15020, "the agent status port (ProxyConfig.statusPort)")
	fs.IntVar(&n.promPort, "prometheus-port", 15090, "the Prometheus stats listener's port")
	fs.StringVar(&n.template, "template", "", "Istio's bootstrap template (default: envoy_bootstrap.json next to this binary, copied from the istio.io/istio module by make)")
}

func (n *nodeFlags) defaults() error {
	switch n.kind {
	case "gateway":
		if n.namespace == "" {
			n.namespace = "istio-system"
		}
		if n.name == "" {
			n.name = "istio-ingressgateway-0"
		}
		if len(n.labels) == 0 {
			n.labels = multiFlag{"istio=ingressgateway,app=istio-ingressgateway"}
		}
	case "sidecar":
		if n.namespace == "" {
			n.namespace = "default"
		}
		if n.name == "" {
			n.name = "httpbin-0"
		}
		if len(n.labels) == 0 {
			n.labels = multiFlag{"app=httpbin"}
		}
	default:
		return fmt.Errorf("--node %q: gateway or sidecar", n.kind)
	}
	if net.ParseIP(n.ip) == nil {
		return fmt.Errorf("--ip %q is not an IP address", n.ip)
	}
	return nil
}

// nodeType is Istio's node type for the proxy ID.
func (n *nodeFlags) nodeType() string {
	if n.kind == "gateway" {
		return "router"
	}
	return "sidecar"
}

// node builds the Envoy node the way pilot-agent does (bootstrap.GetNodeMetaData), from the pod's
// identity, labels and proxy config.
func (n *nodeFlags) node(meshCfg *meshconfig.MeshConfig, xdsAddr string) (*model.Node, error) {
	labels, err := parsePairs(n.labels)
	if err != nil {
		return nil, err
	}
	pcYAML := n.proxyConfig
	m := meshCfg
	if pcYAML != "" {
		if m, err = mesh.ApplyProxyConfig(pcYAML, meshCfg); err != nil {
			return nil, fmt.Errorf("--proxy-config: %v", err)
		}
	}
	pc := m.DefaultConfig
	pc.ProxyAdminPort = int32(n.adminPort)
	pc.StatusPort = int32(n.statusPort)
	pc.DiscoveryAddress = xdsAddr
	pc.ControlPlaneAuthPolicy = meshconfig.AuthenticationPolicy_NONE
	id := fmt.Sprintf("%s~%s~%s.%s~%s.svc.cluster.local", n.nodeType(), n.ip, n.name, n.namespace, n.namespace)
	node, err := bootstrap.GetNodeMetaData(bootstrap.MetadataOptions{
		ID: id, InstanceIPs: []string{n.ip}, ProxyConfig: pc,
		EnvoyStatusPort: n.statusPort, EnvoyPrometheusPort: n.promPort,
	})
	if err != nil {
		return nil, err
	}
	md := node.Metadata
	md.Labels = labels
	md.Namespace = n.namespace
	md.ClusterID = "Kubernetes"
	md.IstioVersion = istioVersion + ".0"
	md.InstanceName = n.name
	md.WorkloadName = n.name[:len(n.name)-2]
	md.ServiceAccount = "spiffe://cluster.local/ns/" + n.namespace + "/sa/default"
	md.MeshID = "cluster.local"
	return node, nil
}

func (n *nodeFlags) templatePath() string {
	if n.template != "" {
		return n.template
	}
	self, err := os.Executable()
	if err != nil {
		return "envoy_bootstrap.json"
	}
	return filepath.Join(filepath.Dir(self), "envoy_bootstrap.json")
}

// renderBootstrap renders Istio's bootstrap template for the node, then points its two agent
// clusters at TCP addresses: xds-grpc (istio-agent's XDS proxy socket in a pod) at xdsAddr, and
// sds-grpc (the agent's SDS socket) at sdsAddr when given.
func (n *nodeFlags) renderBootstrap(node *model.Node, xdsAddr, sdsAddr string) (map[string]any, error) {
	var buf bytes.Buffer
	if err := bootstrap.New(bootstrap.Config{Node: node}).WriteTo(n.templatePath(), &buf); err != nil {
		return nil, fmt.Errorf("rendering %s: %v", n.templatePath(), err)
	}
	var boot map[string]any
	if err := json.Unmarshal(buf.Bytes(), &boot); err != nil {
		return nil, fmt.Errorf("the rendered bootstrap is not JSON: %v", err)
	}
	targets := map[string]string{"xds-grpc": xdsAddr, "sds-grpc": sdsAddr}
	static, _ := boot["static_resources"].(map[string]any)
	clusters, _ := static["clusters"].([]any)
	for _, c := range clusters {
		cl, _ := c.(map[string]any)
		addr, ok := targets[fmt.Sprint(cl["name"])]
		if !ok || addr == "" {
			continue
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, err
		}
		cl["load_assignment"] = map[string]any{
			"cluster_name": cl["name"],
			"endpoints": []any{map[string]any{"lb_endpoints": []any{map[string]any{"endpoint": map[string]any{
				"address": map[string]any{"socket_address": map[string]any{"address": host, "port_value": p}},
			}}}}},
		}
	}
	return boot, nil
}

func cmdBootstrap(args []string) error {
	fs := flag.NewFlagSet("bootstrap", flag.ExitOnError)
	var nf nodeFlags
	nf.register(fs)
	xdsAddr := fs.String("xds", "127.0.0.1:15010", "the ADS address of istio-xds serve")
	sdsAddr := fs.String("sds", "", "the SDS address of istio-xds serve --sds-listen")
	meshFile := fs.String("mesh", "", "the mesh config YAML the server uses (its defaultConfig is the proxy config)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := nf.defaults(); err != nil {
		return err
	}
	m := mesh.DefaultMeshConfig()
	if *meshFile != "" {
		b, err := os.ReadFile(*meshFile)
		if err != nil {
			return err
		}
		if m, err = mesh.ApplyMeshConfigDefaults(string(b)); err != nil {
			return err
		}
	}
	node, err := nf.node(m, *xdsAddr)
	if err != nil {
		return err
	}
	boot, err := nf.renderBootstrap(node, *xdsAddr, *sdsAddr)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(boot)
}
