package cos_test

import (
	"testing"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/cos/costest"
	"github.com/chute/chute/cos/s3test"
)

func TestMain(m *testing.M) { s3test.Main(m) }

func TestS3Conformance(t *testing.T) {
	t.Parallel()
	srv := s3test.Shared(t)
	costest.RunWithQuirks(t, func(t *testing.T) cos.Store { return srv.Store(t) }, s3test.Quirks)
}
