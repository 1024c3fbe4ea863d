package cos

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"

	"github.com/minio/minio-go/v7"
)

func sortStable[T any](s []T, cmp func(a, b T) int) { slices.SortStableFunc(s, cmp) }

// isNetError reports whether err is a failure to talk to the service at
// all (as opposed to an answer from it).
func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH)
}

// explainS3 says in one line what went wrong talking to an S3 service and
// what to change.
func explainS3(err error, endpoint, bucket, accessKey string) string {
	var (
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
		recErr    tls.RecordHeaderError
		dnsErr    *net.DNSError
		er        minio.ErrorResponse
	)
	text := oneLine(err.Error())
	where := endpoint
	if bucket != "" {
		where = fmt.Sprintf("bucket %q at %s", bucket, endpoint)
	}
	switch {
	case errors.As(err, &unknownCA), strings.Contains(text, "certificate signed by unknown authority"):
		return fmt.Sprintf("TLS: %s presents a certificate from an authority this machine does not trust; set AWS_CA_BUNDLE (or the CA file setting) to the PEM file of the CA that signed it", endpoint)
	case errors.As(err, &hostErr):
		return fmt.Sprintf("TLS: the certificate of %s does not cover that host name (%v); use a host name the certificate names", endpoint, hostErr.Error())
	case errors.As(err, &invalid):
		return fmt.Sprintf("TLS: the certificate of %s is not valid (%v)", endpoint, invalid.Error())
	case errors.As(err, &recErr), strings.Contains(text, "server gave HTTP response to HTTPS client"),
		strings.Contains(text, "first record does not look like a TLS handshake"):
		return fmt.Sprintf("%s does not speak TLS; use http:// in the endpoint URL", endpoint)
	case strings.Contains(text, "malformed HTTP response") || strings.Contains(text, "malformed HTTP status code"),
		strings.Contains(text, "HTTP request to an HTTPS server"):
		return fmt.Sprintf("%s did not answer in plain HTTP (perhaps it wants TLS); use https:// in the endpoint URL", endpoint)
	case errors.As(err, &dnsErr):
		return fmt.Sprintf("cannot resolve the host of %s (%s); check the endpoint URL", endpoint, dnsErr.Err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("cannot reach %s: connection refused; check the endpoint URL and that the service is running", endpoint)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return fmt.Sprintf("cannot reach %s: no route to the host; check the endpoint URL and the network", endpoint)
	case isTimeout(err):
		return fmt.Sprintf("no answer from %s in time; check the endpoint URL, the network and any firewall", endpoint)
	case errors.As(err, &er):
		who := ""
		if accessKey != "" {
			who = fmt.Sprintf(" for access key %q", accessKey)
		}
		switch er.Code {
		case "InvalidAccessKeyId":
			return fmt.Sprintf("%s does not know access key %q; check AWS_ACCESS_KEY_ID or the credentials file", endpoint, accessKey)
		case "SignatureDoesNotMatch":
			return fmt.Sprintf("%s refused the signature%s: the secret key is wrong; check AWS_SECRET_ACCESS_KEY or the credentials file", endpoint, who)
		case "InvalidToken", "ExpiredToken":
			return fmt.Sprintf("%s refused the session token%s (%s); renew the temporary credentials (AWS_SESSION_TOKEN)", endpoint, who, er.Code)
		case "RequestTimeTooSkewed":
			return fmt.Sprintf("this machine's clock is too far from %s's; set the clock (NTP)", endpoint)
		case "AuthorizationHeaderMalformed", "InvalidRegion", "IllegalLocationConstraintException":
			return fmt.Sprintf("%s refused the region (%s); set the region the bucket lives in", endpoint, oneLine(er.Message))
		case "NoSuchBucket":
			return fmt.Sprintf("bucket %q does not exist at %s; create it or check the name", bucket, endpoint)
		case "AccessDenied", "AllAccessDisabled":
			return fmt.Sprintf("access to %s denied%s; check the key's permissions (it needs to list and read/write the bucket)", where, who)
		}
		if er.StatusCode == http.StatusForbidden {
			return fmt.Sprintf("access to %s denied%s (HTTP 403); check the access key, secret key and permissions", where, who)
		}
		if er.StatusCode == http.StatusNotFound && bucket != "" {
			return fmt.Sprintf("bucket %q does not exist at %s; create it or check the name", bucket, endpoint)
		}
		return fmt.Sprintf("%s answered %s (HTTP %d): %s", where, er.Code, er.StatusCode, oneLine(er.Message))
	}
	return fmt.Sprintf("talking to %s failed: %s", where, text)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
