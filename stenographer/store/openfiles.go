package store

import (
	"container/list"
	"sync"
)

// openFiles keeps up to limit pairs open, closing the least recently used
// idle pair when a new one is needed. Pairs in use are never closed; a
// forgotten pair is closed when its last user releases it.
type openFiles struct {
	mu    sync.Mutex
	limit int
	byKey map[string]*openEntry
	idle  *list.List // of *openEntry with refs == 0, least recent first
}

type openEntry struct {
	key       string
	p         *pair
	refs      int
	forgotten bool
	elem      *list.Element // in idle, when refs == 0
}

func newOpenFiles(limit int) *openFiles {
	return &openFiles{limit: limit, byKey: map[string]*openEntry{}, idle: list.New()}
}

func (o *openFiles) acquire(key string, open func() (*pair, error)) (*pair, func(), error) {
	o.mu.Lock()
	e := o.byKey[key]
	if e != nil {
		if e.elem != nil {
			o.idle.Remove(e.elem)
			e.elem = nil
		}
		e.refs++
		o.mu.Unlock()
		return e.p, func() { o.release(e) }, nil
	}
	o.mu.Unlock()
	// Open outside the lock: it does IO. Two callers may race to open the
	// same pair; the loser closes its copy.
	p, err := open()
	if err != nil {
		return nil, nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if e := o.byKey[key]; e != nil {
		p.close()
		if e.elem != nil {
			o.idle.Remove(e.elem)
			e.elem = nil
		}
		e.refs++
		return e.p, func() { o.release(e) }, nil
	}
	e = &openEntry{key: key, p: p, refs: 1}
	o.byKey[key] = e
	o.evict()
	return p, func() { o.release(e) }, nil
}

func (o *openFiles) release(e *openEntry) {
	o.mu.Lock()
	defer o.mu.Unlock()
	e.refs--
	if e.refs > 0 {
		return
	}
	if e.forgotten {
		e.p.close()
		return
	}
	e.elem = o.idle.PushBack(e)
	o.evict()
}

// evict closes idle pairs while more than limit are open. REQUIRES: o.mu.
func (o *openFiles) evict() {
	for len(o.byKey) > o.limit && o.idle.Len() > 0 {
		e := o.idle.Remove(o.idle.Front()).(*openEntry)
		e.elem = nil
		delete(o.byKey, e.key)
		e.p.close()
	}
}

func (o *openFiles) forget(key string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	e := o.byKey[key]
	if e == nil {
		return
	}
	delete(o.byKey, key)
	e.forgotten = true
	if e.elem != nil {
		o.idle.Remove(e.elem)
		e.elem = nil
		e.p.close()
	}
}

// count returns the number of open pairs, for tests and stats.
func (o *openFiles) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.byKey)
}
