package cache

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/chute/chute/engine"
	badger "github.com/dgraph-io/badger/v4"
)

// The index is a Badger database in <dir>/index. Its keys:
//
//	"meta/version"  the format version, formatVersion as decimal text
//	"meta/open"     present while a process has the cache open; found at
//	                Open, it means the last user stopped without Close, and
//	                the read-block records are dropped (their data may not
//	                have reached the disk); staged records are kept
//	"s/<id>"        a stagedRecord (JSON), one per staged write file
//	"b/<id>"        a blockRecord (JSON), one per cached object version
//
// A change of any record's meaning bumps formatVersion; Open refuses an
// index of another version rather than guess (staged data may be in it).
const formatVersion = "1"

const (
	keyVersion = "meta/version"
	keyOpen    = "meta/open"
	prefStaged = "s/"
	prefBlocks = "b/"
)

// State is where a staged file is on its way to the server.
type State string

const (
	StateDirty     State = "dirty"     // changed since the last upload; needs uploading
	StateUploading State = "uploading" // an upload is running
	StateUploaded  State = "uploaded"  // the server holds exactly these bytes and metadata
)

// stagedRecord is the persisted record of one staged write file.
type stagedRecord struct {
	ID         string    `json:"id"`  // names the file staged/<id>
	Key        string    `json:"key"` // the object key it will be stored as
	Size       int64     `json:"size"`
	Mtime      time.Time `json:"mtime"`
	Mode       uint32    `json:"mode"` // st_mode, type bits included
	UID        *uint32   `json:"uid,omitempty"`
	GID        *uint32   `json:"gid,omitempty"`
	State      State     `json:"state"`
	TransferID string    `json:"transfer"` // changes whenever the bytes change
	// Resume is the engine's checkpoint for TransferID: what the server has
	// acknowledged. Nil when nothing is known.
	Resume []byte `json:"resume,omitempty"`
	ETag   string `json:"etag,omitempty"` // of the uploaded object, when State is uploaded
}

// blockRecord is the persisted record of one cached object version.
type blockRecord struct {
	ID     string         `json:"id"` // names the file blocks/<id>
	Key    string         `json:"key"`
	Size   int64          `json:"size"`
	ETag   string         `json:"etag"`
	Mtime  time.Time      `json:"mtime"`
	Ranges []engine.Range `json:"ranges"` // present bytes
	ATime  time.Time      `json:"atime"`  // last use, for LRU eviction
}

// index wraps the Badger database.
type index struct {
	db *badger.DB
}

// openIndex opens (or creates) the index in dir. unclean reports that the
// previous user did not close it.
func openIndex(dir string, log *slog.Logger) (ix *index, unclean bool, err error) {
	opt := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log}).
		WithMemTableSize(4 << 20).
		WithValueLogFileSize(8 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(4).
		WithBaseTableSize(1 << 20).
		WithBlockCacheSize(1 << 20).
		WithIndexCacheSize(1 << 20).
		WithValueThreshold(1 << 10).
		WithNumCompactors(2).
		WithMetricsEnabled(false).
		WithDetectConflicts(false)
	db, err := badger.Open(opt)
	if err != nil {
		if strings.Contains(err.Error(), "lock") {
			return nil, false, fmt.Errorf("open cache index %s: %w (another chute mount uses this cache folder: pass another --cache-dir)", dir, err)
		}
		return nil, false, fmt.Errorf("open cache index %s: %w", dir, err)
	}
	ix = &index{db: db}
	v, err := ix.get(keyVersion)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		if err := ix.put(keyVersion, []byte(formatVersion)); err != nil {
			db.Close()
			return nil, false, err
		}
	case err != nil:
		db.Close()
		return nil, false, err
	case string(v) != formatVersion:
		db.Close()
		return nil, false, fmt.Errorf("cache index %s has format version %s, this chute reads %s: use another --cache-dir", dir, v, formatVersion)
	}
	_, err = ix.get(keyOpen)
	unclean = err == nil
	if err := ix.put(keyOpen, []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		db.Close()
		return nil, false, err
	}
	return ix, unclean, nil
}

func (ix *index) get(key string) ([]byte, error) {
	var v []byte
	err := ix.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get([]byte(key))
		if err != nil {
			return err
		}
		v, err = it.ValueCopy(nil)
		return err
	})
	return v, err
}

func (ix *index) put(key string, v []byte) error {
	err := ix.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(key), v) })
	if err != nil {
		return fmt.Errorf("cache index: write %s: %w", key, err)
	}
	return nil
}

func (ix *index) del(key string) error {
	err := ix.db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte(key)) })
	if err != nil {
		return fmt.Errorf("cache index: delete %s: %w", key, err)
	}
	return nil
}

func (ix *index) putJSON(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("cache index: encode %s: %w", key, err)
	}
	return ix.put(key, b)
}

// scan calls fn for every record under prefix.
func (ix *index) scan(prefix string, fn func(key string, v []byte) error) error {
	return ix.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 64, Prefix: []byte(prefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if err := fn(string(item.Key()), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// close marks a clean stop (unless crashed) and closes the database.
func (ix *index) close(clean bool) error {
	var err error
	if clean {
		err = ix.del(keyOpen)
	}
	return errors.Join(err, ix.db.Close())
}

// badgerLogger sends Badger's warnings and errors to slog; its chatter is dropped.
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) Errorf(f string, a ...any)   { l.log.Error("badger: " + fmt.Sprintf(f, a...)) }
func (l badgerLogger) Warningf(f string, a ...any) { l.log.Warn("badger: " + fmt.Sprintf(f, a...)) }
func (l badgerLogger) Infof(f string, a ...any)    {}
func (l badgerLogger) Debugf(f string, a ...any)   {}
