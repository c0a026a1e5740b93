package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
)

// The SDS server stands in for istio-agent's: it serves the workload certificate ("default") and
// the mesh root ("ROOTCA") that Istio's generated clusters and listeners ask for, from a CA made at
// start. Without it Envoy waits for those secrets before it warms a cluster that auto mTLS gives
// an Istio-mTLS transport socket match. Like istio-agent, it also serves a file-mounted CA
// ("file-root:<path>", a DestinationRule's caCertificates) from that file.

const secretType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

type sdsServer struct {
	secretv3.UnimplementedSecretDiscoveryServiceServer
	secrets map[string]*tls.Secret
}

func serveSDS(addr string) (func(), error) {
	secrets, err := workloadSecrets()
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	g := grpc.NewServer()
	secretv3.RegisterSecretDiscoveryServiceServer(g, &sdsServer{secrets: secrets})
	go func() { _ = g.Serve(lis) }()
	return g.Stop, nil
}

func (s *sdsServer) StreamSecrets(stream secretv3.SecretDiscoveryService_StreamSecretsServer) error {
	nonce := 0
	sent := map[string]bool{}
	for {
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		var resources []*anypb.Any
		fresh := false
		for _, name := range req.ResourceNames {
			sec, ok := s.secrets[name]
			if !ok {
				sec, ok = fileRoot(name)
			}
			if !ok {
				continue
			}
			a, err := anypb.New(sec)
			if err != nil {
				return err
			}
			resources = append(resources, a)
			if !sent[name] {
				fresh = true
				sent[name] = true
			}
		}
		if !fresh {
			continue // an ACK, or names we do not serve
		}
		nonce++
		if err := stream.Send(&discovery.DiscoveryResponse{
			VersionInfo: "1", TypeUrl: secretType, Resources: resources, Nonce: big.NewInt(int64(nonce)).String(),
		}); err != nil {
			return err
		}
	}
}

// workloadSecrets makes a CA and a workload certificate with the SPIFFE identity of the default
// service account, valid for a day.
func workloadSecrets() (map[string]*tls.Secret, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"istio-xds test CA"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	id, _ := url.Parse("spiffe://cluster.local/ns/default/sa/default")
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		URIs:        []*url.URL{id},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	pemOf := func(kind string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}) }
	inline := func(b []byte) *core.DataSource {
		return &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: b}}
	}
	return map[string]*tls.Secret{
		"default": {Name: "default", Type: &tls.Secret_TlsCertificate{TlsCertificate: &tls.TlsCertificate{
			CertificateChain: inline(pemOf("CERTIFICATE", leafDER)), PrivateKey: inline(pemOf("EC PRIVATE KEY", keyDER)),
		}}},
		"ROOTCA": {Name: "ROOTCA", Type: &tls.Secret_ValidationContext{ValidationContext: &tls.CertificateValidationContext{
			TrustedCa: inline(pemOf("CERTIFICATE", caDER)),
		}}},
	}, nil
}

// fileRoot is the secret istio-agent makes of a file-mounted CA: "file-root:<path>" becomes a
// validation context trusting that file's certificates.
func fileRoot(name string) (*tls.Secret, bool) {
	path, ok := strings.CutPrefix(name, "file-root:")
	if !ok {
		return nil, false
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	return &tls.Secret{Name: name, Type: &tls.Secret_ValidationContext{ValidationContext: &tls.CertificateValidationContext{
		TrustedCa: &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: pem}}}}}, true
}
