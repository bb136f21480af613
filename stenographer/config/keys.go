package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// The keys each object may hold. encoding/json matches names without
// regard to case, so the check does too.
var (
	topKeys = fieldSet("Threads", "StenotypePath", "Interface", "Port", "Host", "Flags", "CertPath", "MaxOpenFiles", "Rpc",
		"TestimonySocket")
	threadKeys = fieldSet("PacketsDirectory", "IndexDirectory", "Interface", "DiskFreePercentage", "MaxDirectoryFiles")
	rpcKeys    = fieldSet("CaCert", "ServerKey", "ServerCert", "ServerPort", "ServerHost", "ServerPcapPath",
		"ServerPcapMaxSize", "ClientPcapChunkSize", "ClientPcapMaxSize")
)

func fieldSet(names ...string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		m[strings.ToLower(n)] = true
	}
	return m
}

// checkKeys walks the JSON tokens and reports the first key that no
// field takes, with its path and line. encoding/json's
// DisallowUnknownFields gives neither. Syntax errors are left to the
// decoder that runs next, which reports them with their position.
func checkKeys(data []byte) error {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return &Error{Msg: "empty file (expected a JSON object)"}
	}
	if trimmed[0] != '{' {
		return &Error{Line: lineOf(data, int64(bytes.IndexByte(data, trimmed[0]))), Msg: "the file must hold one JSON object"}
	}
	k := keyChecker{data: data, dec: json.NewDecoder(bytes.NewReader(data))}
	err := k.value("", topKeys, func(key string) map[string]bool {
		switch strings.ToLower(key) {
		case "rpc":
			return rpcKeys
		case "threads":
			return threadKeys
		}
		return nil
	})
	if e, ok := err.(*Error); ok {
		return e
	}
	return nil // a syntax error: decoded and reported later
}

type keyChecker struct {
	data []byte
	dec  *json.Decoder
}

// value reads one value. When it is an object its keys must be in keys
// (nil: anything goes); child says which set the value of each key uses.
// Arrays pass keys on to their elements, so Threads' elements use
// threadKeys.
func (k *keyChecker) value(path string, keys map[string]bool, child func(string) map[string]bool) error {
	tok, err := k.dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		for k.dec.More() {
			before := k.dec.InputOffset()
			t, err := k.dec.Token()
			if err != nil {
				return err
			}
			name := t.(string)
			key := name
			if path != "" {
				key = path + "." + name
			}
			if keys != nil && !keys[strings.ToLower(name)] {
				return &Error{Key: key, Line: lineOf(k.data, keyOffset(k.data, before)), Msg: "unknown key"}
			}
			var sub map[string]bool
			if child != nil {
				sub = child(name)
			}
			if err := k.value(key, sub, nil); err != nil {
				return err
			}
		}
		_, err = k.dec.Token() // '}'
		return err
	case json.Delim('['):
		for i := 0; k.dec.More(); i++ {
			if err := k.value(fmt.Sprintf("%s[%d]", path, i), keys, nil); err != nil {
				return err
			}
		}
		_, err = k.dec.Token() // ']'
		return err
	}
	return nil
}

// keyOffset skips the separators after offset, landing on the key's quote.
func keyOffset(data []byte, offset int64) int64 {
	for offset < int64(len(data)) && strings.IndexByte(" \t\r\n,{", data[offset]) >= 0 {
		offset++
	}
	return offset
}
