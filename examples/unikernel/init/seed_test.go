package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jitsu-unikernel/jitsu/seeddisk"
)

func TestPartitionDev(t *testing.T) {
	text := "major minor  #blocks  name\n\n 254        0         10 vda\n 254       16          4 vdb\n"
	tests := []struct {
		dev          string
		major, minor uint32
		ok           bool
	}{
		{"vda", 254, 0, true},
		{"vdb", 254, 16, true},
		{"vdc", 0, 0, false},
		{"name", 0, 0, false},
	}
	for _, tt := range tests {
		ma, mi, ok := partitionDev(text, tt.dev)
		if ma != tt.major || mi != tt.minor || ok != tt.ok {
			t.Errorf("%s: %d:%d %v, want %d:%d %v", tt.dev, ma, mi, ok, tt.major, tt.minor, tt.ok)
		}
	}
}

// TestSeedDisk reads an image written by jitsu's seeddisk package, padded
// like a disk, and builds the TLS configuration from it.
func TestSeedDisk(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := testPair(t)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var img bytes.Buffer
	err := seeddisk.Pack(&img, map[string]string{
		"tls/cert.pem": write("cert", certPEM), "tls/key.pem": write("key", keyPEM), "motd": write("motd", []byte("hi")),
	})
	if err != nil {
		t.Fatal(err)
	}
	img.Write(make([]byte, 4096)) // the rest of the disk
	files, err := readSeed(&img)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 || string(files["motd"]) != "hi" {
		t.Errorf("files %v", files)
	}
	cfg, err := seedTLS(files)
	if err != nil || cfg == nil || len(cfg.Certificates) != 1 {
		t.Fatalf("seedTLS = %v, %v", cfg, err)
	}
	if cfg, err := seedTLS(map[string][]byte{"motd": []byte("hi")}); cfg != nil || err != nil {
		t.Errorf("no TLS files: %v, %v", cfg, err)
	}
	if _, err := seedTLS(map[string][]byte{seedCert: certPEM}); err == nil {
		t.Error("a certificate without a key was accepted")
	}
}

func testPair(t *testing.T) ([]byte, []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "blog.example.test"},
		DNSNames: []string{"blog.example.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}
