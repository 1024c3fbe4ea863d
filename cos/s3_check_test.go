package cos_test

import (
	"context"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/cos/s3test"
)

// clearAWSEnv makes the test independent of the machine's AWS settings.
func clearAWSEnv(t *testing.T) {
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY",
		"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CA_BUNDLE"} {
		t.Setenv(v, "")
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "no-credentials"))
}

func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestS3CheckSaysWhatToFix starts stores with the usual mistakes and checks
// that each fails at once, on one line, naming the fix, with the right
// sentinel.
func TestS3CheckSaysWhatToFix(t *testing.T) {
	srv := s3test.Shared(t)
	clearAWSEnv(t)
	bucket := srv.NewBucket(t)
	good := srv.Config()
	good.Bucket = bucket

	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>`))
	}))
	defer tlsSrv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	tlsHost := strings.TrimPrefix(tlsSrv.URL, "https://")

	tests := []struct {
		name     string
		edit     func(c *cos.S3Config)
		sentinel error
		says     string
	}{
		{"works", func(c *cos.S3Config) {}, nil, ""},
		{"wrong access key", func(c *cos.S3Config) { c.AccessKey = "NOSUCHKEY" }, cos.ErrPermission, `does not know access key "NOSUCHKEY"`},
		{"wrong secret key", func(c *cos.S3Config) { c.SecretKey = "wrong-secret" }, cos.ErrPermission, "the secret key is wrong"},
		{"missing bucket", func(c *cos.S3Config) { c.Bucket = "no-such-bucket-here" }, cos.ErrNotFound, `bucket "no-such-bucket-here" does not exist`},
		{"nothing listening", func(c *cos.S3Config) { c.Endpoint = "http://" + closedPort(t) }, cos.ErrUnavailable, "connection refused; check the endpoint URL"},
		{"https to a plain http service", func(c *cos.S3Config) { c.Endpoint = strings.Replace(c.Endpoint, "http://", "https://", 1) }, cos.ErrUnavailable, "does not speak TLS; use http://"},
		{"untrusted certificate", func(c *cos.S3Config) { c.Endpoint = tlsSrv.URL }, cos.ErrUnavailable, "set AWS_CA_BUNDLE"},
		{"trusted with a CA file", func(c *cos.S3Config) { c.Endpoint, c.CAFile = tlsSrv.URL, caFile }, cos.ErrPermission, "denied"},
		{"http to a TLS service", func(c *cos.S3Config) { c.Endpoint = "http://" + tlsHost }, cos.ErrUnavailable, "use https://"},
		{"no credentials anywhere", func(c *cos.S3Config) { c.AccessKey, c.SecretKey = "", "" }, nil, "no S3 credentials found: set AWS_ACCESS_KEY_ID"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.edit(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			start := time.Now()
			_, err := cos.NewS3(ctx, cfg)
			if tc.says == "" {
				if err != nil {
					t.Fatalf("NewS3: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("NewS3 succeeded; want an error saying %q", tc.says)
			}
			t.Logf("NewS3 said, after %v: %v", time.Since(start).Round(time.Millisecond), err)
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not say %q", err, tc.says)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("error %v does not wrap %v", err, tc.sentinel)
			}
			if time.Since(start) > 15*time.Second {
				t.Errorf("NewS3 took %v to fail; a start-up check should answer quickly", time.Since(start))
			}
		})
	}
}

// TestS3CredentialSources checks where NewS3 finds credentials: explicit
// fields, then the AWS_* variables, then the shared credentials file.
func TestS3CredentialSources(t *testing.T) {
	srv := s3test.Shared(t)
	bucket := srv.NewBucket(t)
	credFile := filepath.Join(t.TempDir(), "credentials")
	content := "[default]\naws_access_key_id = WRONGKEY\naws_secret_access_key = wrong\n\n" +
		"[chute]\naws_access_key_id = " + srv.AccessKey + "\naws_secret_access_key = " + srv.SecretKey + "\n"
	if err := os.WriteFile(credFile, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		env      map[string]string
		explicit bool
		wantErr  string
	}{
		{"environment", map[string]string{"AWS_ACCESS_KEY_ID": srv.AccessKey, "AWS_SECRET_ACCESS_KEY": srv.SecretKey}, false, ""},
		{"shared file, AWS_PROFILE", map[string]string{"AWS_SHARED_CREDENTIALS_FILE": credFile, "AWS_PROFILE": "chute"}, false, ""},
		{"shared file, default profile", map[string]string{"AWS_SHARED_CREDENTIALS_FILE": credFile}, false, `does not know access key "WRONGKEY"`},
		{"shared file, missing profile", map[string]string{"AWS_SHARED_CREDENTIALS_FILE": credFile, "AWS_PROFILE": "nope"}, false, "add profile [nope] to " + credFile},
		{"environment beats the file", map[string]string{"AWS_ACCESS_KEY_ID": srv.AccessKey, "AWS_SECRET_ACCESS_KEY": srv.SecretKey, "AWS_SHARED_CREDENTIALS_FILE": credFile}, false, ""},
		{"explicit beats the environment", map[string]string{"AWS_ACCESS_KEY_ID": "WRONGKEY", "AWS_SECRET_ACCESS_KEY": "wrong"}, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearAWSEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cfg := srv.Config()
			cfg.Bucket = bucket
			if !tc.explicit {
				cfg.AccessKey, cfg.SecretKey = "", ""
			}
			_, err := cos.NewS3(context.Background(), cfg)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("NewS3: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("NewS3 = %v; want an error saying %q", err, tc.wantErr)
			}
		})
	}
}

func TestS3ConfigRejected(t *testing.T) {
	tests := []struct {
		cfg  cos.S3Config
		says string
	}{
		{cos.S3Config{}, "no endpoint URL"},
		{cos.S3Config{Endpoint: "ftp://host"}, "scheme must be http or https"},
		{cos.S3Config{Endpoint: "http://host/bucket"}, "has a path"},
		{cos.S3Config{Endpoint: "http://host", Addressing: "sideways"}, "use auto, path or virtual"},
		{cos.S3Config{Endpoint: "http://host", AccessKey: "only-the-key"}, "needs its secret key"},
		{cos.S3Config{Endpoint: "https://host", AccessKey: "k", SecretKey: "s", CAFile: "/nonexistent/ca.pem"}, "CA bundle"},
	}
	for _, tc := range tests {
		_, err := cos.NewS3Unchecked(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("NewS3Unchecked(%+v) = %v; want an error saying %q", tc.cfg, err, tc.says)
		}
	}
}
