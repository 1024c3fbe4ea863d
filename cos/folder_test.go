package cos_test

import (
	"testing"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/cos/costest"
)

func TestFolderConformance(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	costest.Run(t, func(t *testing.T) cos.Store {
		f, err := cos.NewFolder(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	})
}
