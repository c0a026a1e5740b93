package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	meshconfig "istio.io/api/mesh/v1alpha1"
	"istio.io/istio/pkg/config/mesh"
)

// inputs is what a user's YAML files hold, sorted the way Istio reads them: Istio kinds go to the
// config store (what istiod watches as CRDs), Kubernetes and Gateway API objects to the fake
// Kubernetes clientset, an IstioOperator's spec.meshConfig into the mesh config.
type inputs struct {
	istio []string // YAML documents of Istio kinds
	kube  []string // YAML documents of Kubernetes / Gateway API objects
	mesh  *meshconfig.MeshConfig
}

// istioGroups are the API groups istiod reads from its config store.
var istioGroups = []string{
	"networking.istio.io/", "security.istio.io/", "extensions.istio.io/", "telemetry.istio.io/",
}

type objectHead struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
}

// yamlFiles expands each argument: a file as is, a directory to its *.yaml/*.yml files (sorted).
func yamlFiles(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, a)
			continue
		}
		var found []string
		for _, pat := range []string{"*.yaml", "*.yml"} {
			m, _ := filepath.Glob(filepath.Join(a, pat))
			found = append(found, m...)
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	return out, nil
}

// splitDocuments splits a YAML stream on document separators, dropping empty documents.
func splitDocuments(text string) []string {
	var docs []string
	var cur []string
	flush := func() {
		d := strings.Join(cur, "\n")
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, d)
		}
		cur = nil
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.TrimRight(line, " \t\r") == "---" {
			flush()
			continue
		}
		cur = append(cur, line)
	}
	flush()
	return docs
}

func stripComments(d string) string {
	var b strings.Builder
	for _, l := range strings.Split(d, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// loadInputs reads the files and sorts their objects. podIPs maps a Deployment name to the IP of the
// one Pod the tool creates for it (what the Deployment controller and the CNI would do in a
// cluster); Deployments without an entry get no Pod.
func loadInputs(args []string, meshFile string, podIPs map[string]string) (*inputs, error) {
	files, err := yamlFiles(args)
	if err != nil {
		return nil, err
	}
	in := &inputs{mesh: mesh.DefaultMeshConfig()}
	var services, pods []string
	if meshFile != "" {
		b, err := os.ReadFile(meshFile)
		if err != nil {
			return nil, err
		}
		if in.mesh, err = mesh.ApplyMeshConfigDefaults(string(b)); err != nil {
			return nil, fmt.Errorf("%s: %v", meshFile, err)
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, doc := range splitDocuments(string(b)) {
			var head objectHead
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				return nil, fmt.Errorf("%s: %v", f, err)
			}
			switch {
			case head.Kind == "IstioOperator":
				if err := applyOperatorMesh(in, doc); err != nil {
					return nil, fmt.Errorf("%s: %v", f, err)
				}
			case hasAnyPrefix(head.APIVersion, istioGroups):
				in.istio = append(in.istio, doc)
			case head.Kind == "Deployment":
				pod, err := podFor(doc, podIPs)
				if err != nil {
					return nil, fmt.Errorf("%s: %v", f, err)
				}
				if pod != "" {
					in.kube = append(in.kube, pod)
					pods = append(pods, pod)
				}
			case head.Kind == "ServiceAccount" || head.Kind == "Role" || head.Kind == "RoleBinding":
				// no effect on generated configuration
			default:
				in.kube = append(in.kube, doc)
				if head.Kind == "Service" && head.APIVersion == "v1" {
					services = append(services, doc)
				}
			}
		}
	}
	slices, err := endpointSlices(services, pods)
	if err != nil {
		return nil, err
	}
	in.kube = append(in.kube, slices...)
	return in, nil
}

type service struct {
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Spec struct {
		Selector map[string]string `json:"selector"`
		Ports    []struct {
			Name       string `json:"name"`
			Port       int    `json:"port"`
			Protocol   string `json:"protocol"`
			TargetPort any    `json:"targetPort"`
		} `json:"ports"`
	} `json:"spec"`
}

type pod struct {
	Metadata struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Containers []struct {
			Ports []struct {
				Name          string `json:"name"`
				ContainerPort int    `json:"containerPort"`
			} `json:"ports"`
		} `json:"containers"`
	} `json:"spec"`
	Status struct {
		PodIP string `json:"podIP"`
	} `json:"status"`
}

// endpointSlices renders what Kubernetes' EndpointSlice controller would make for each Service with a
// selector: one slice with the selected Pods (the ones --pod-ip created) on the Service's target ports.
func endpointSlices(services, pods []string) ([]string, error) {
	var parsedPods []pod
	for _, p := range pods {
		var v pod
		if err := yaml.Unmarshal([]byte(p), &v); err != nil {
			return nil, err
		}
		parsedPods = append(parsedPods, v)
	}
	var out []string
	for _, doc := range services {
		var svc service
		if err := yaml.Unmarshal([]byte(doc), &svc); err != nil {
			return nil, err
		}
		ns := svc.Metadata.Namespace
		if ns == "" {
			ns = "default"
		}
		if len(svc.Spec.Selector) == 0 {
			continue
		}
		var endpoints []any
		var selected []pod
		for _, p := range parsedPods {
			if p.Metadata.Namespace != ns || !selects(svc.Spec.Selector, p.Metadata.Labels) {
				continue
			}
			selected = append(selected, p)
			endpoints = append(endpoints, map[string]any{
				"addresses":  []any{p.Status.PodIP},
				"conditions": map[string]any{"ready": true},
				"targetRef":  map[string]any{"kind": "Pod", "name": p.Metadata.Name, "namespace": ns},
			})
		}
		if len(selected) == 0 {
			continue
		}
		var ports []any
		for _, sp := range svc.Spec.Ports {
			target := targetPortNumber(sp.TargetPort, sp.Port, selected[0])
			proto := sp.Protocol
			if proto == "" {
				proto = "TCP"
			}
			ports = append(ports, map[string]any{"name": sp.Name, "port": target, "protocol": proto})
		}
		slice := map[string]any{
			"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
			"metadata": map[string]any{
				"name": svc.Metadata.Name + "-0", "namespace": ns,
				"labels": map[string]any{"kubernetes.io/service-name": svc.Metadata.Name},
			},
			"addressType": addressType(selected[0].Status.PodIP),
			"endpoints":   endpoints,
			"ports":       ports,
		}
		b, err := yaml.Marshal(slice)
		if err != nil {
			return nil, err
		}
		out = append(out, string(b))
	}
	return out, nil
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// targetPortNumber resolves a Service port's targetPort: a number, a container port name, or the port.
func targetPortNumber(target any, port int, p pod) int {
	switch t := target.(type) {
	case float64:
		return int(t)
	case string:
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == t {
					return cp.ContainerPort
				}
			}
		}
	}
	return port
}

func addressType(ip string) string {
	if strings.Contains(ip, ":") {
		return "IPv6"
	}
	return "IPv4"
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// applyOperatorMesh merges an IstioOperator's spec.meshConfig into the mesh config, as
// `istioctl install -f` does.
func applyOperatorMesh(in *inputs, doc string) error {
	var op struct {
		Spec struct {
			MeshConfig map[string]any `json:"meshConfig"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal([]byte(doc), &op); err != nil {
		return err
	}
	if op.Spec.MeshConfig == nil {
		return nil
	}
	b, err := yaml.Marshal(op.Spec.MeshConfig)
	if err != nil {
		return err
	}
	m, err := mesh.ApplyMeshConfig(string(b), in.mesh)
	if err != nil {
		return err
	}
	in.mesh = m
	return nil
}

// podFor renders the Pod a Deployment would get, with the given IP, Ready and Running.
func podFor(doc string, podIPs map[string]string) (string, error) {
	var d struct {
		Metadata struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
		Spec struct {
			Template struct {
				Metadata struct {
					Labels      map[string]string `json:"labels"`
					Annotations map[string]string `json:"annotations"`
				} `json:"metadata"`
				Spec map[string]any `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
		return "", err
	}
	ip, ok := podIPs[d.Metadata.Name]
	if !ok {
		return "", nil
	}
	ns := d.Metadata.Namespace
	if ns == "" {
		ns = "default"
	}
	pod := map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata": map[string]any{
			"name": d.Metadata.Name + "-0", "namespace": ns,
			"labels": d.Spec.Template.Metadata.Labels, "annotations": d.Spec.Template.Metadata.Annotations,
		},
		"spec": d.Spec.Template.Spec,
		"status": map[string]any{
			"phase": "Running", "podIP": ip, "podIPs": []any{map[string]any{"ip": ip}},
			"conditions": []any{map[string]any{"type": "Ready", "status": "True"}},
		},
	}
	b, err := yaml.Marshal(pod)
	return string(b), err
}

// parsePairs parses repeated "k=v" values (or a single "k=v,k2=v2").
func parsePairs(values []string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range values {
		for _, kv := range strings.Split(v, ",") {
			if kv == "" {
				continue
			}
			k, val, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, fmt.Errorf("%q is not key=value", kv)
			}
			out[k] = val
		}
	}
	return out, nil
}

// multiFlag collects a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
