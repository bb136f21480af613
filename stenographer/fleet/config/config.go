// Package config reads stenofleet's configuration: Docket's YAML file as
// it is (stenographer_instances, SPOOL_DIR and Docket's other upper-case
// keys) plus stenofleet's own keys, or the same keys as a JSON object.
//
// Stage: file → validated Config. Unknown keys and bad values are errors
// naming the key (and the line, where the decoder knows it). Docket keys
// that only the job spool uses (EXPIRE_TIME, EXPIRE_SPACE, TIME_WINDOW,
// CLEANUP_TIME, MERGED_NAME) are checked and kept for it, as is our
// MAX_JOBS.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Defaults for keys that are missing.
const (
	DefaultListen         = "127.0.0.1:9443"
	DefaultSensorTimeout  = 10 * time.Minute
	DefaultMergedName     = "merged"
	DefaultSensorPort     = 1234
	DefaultHealthInterval = 30 * time.Second
	DefaultHealthHistory  = 6 * time.Hour
	// MinHealthInterval keeps a typo from polling sensors in a busy loop.
	MinHealthInterval = time.Second
	// MaxHealthSamples bounds each sensor's health history: a short
	// interval over a long history keeps the newest samples only.
	MaxHealthSamples = 4096
	// DefaultMaxJobs runs one job at a time, as Docket's single query
	// worker; MaxMaxJobs bounds MAX_JOBS since every job opens a stream
	// to every sensor.
	DefaultMaxJobs = 1
	MaxMaxJobs     = 64
)

// Config is the whole file.
type Config struct {
	Sensors []Sensor `yaml:"stenographer_instances" json:"stenographer_instances"`

	// stenofleet's own keys: the analysts' side.
	Listen   string `yaml:"LISTEN" json:"LISTEN"`       // host:port of the HTTPS API
	TLSCert  string `yaml:"TLS_CERT" json:"TLS_CERT"`   // server certificate shown to analysts
	TLSKey   string `yaml:"TLS_KEY" json:"TLS_KEY"`     // its key
	ClientCA string `yaml:"CLIENT_CA" json:"CLIENT_CA"` // CA that signs analysts' client certificates
	// PasswordFile ("user:bcrypt-hash" lines, htpasswd -B) lets browsers
	// log in with a password; without it only client certificates get in.
	PasswordFile string `yaml:"PASSWORD_FILE" json:"PASSWORD_FILE"`
	// SensorTimeout bounds one sensor's part of a query; QUERY_TIMEOUT
	// (Docket's name) is the same key.
	SensorTimeout Duration `yaml:"SENSOR_TIMEOUT" json:"SENSOR_TIMEOUT"`
	QueryTimeout  Duration `yaml:"QUERY_TIMEOUT" json:"QUERY_TIMEOUT"`
	// HealthInterval is how often each sensor's /debug/stats and
	// /metrics are polled for the sensor page; HealthHistory how much of
	// that is kept.
	HealthInterval Duration `yaml:"HEALTH_INTERVAL" json:"HEALTH_INTERVAL"`
	HealthHistory  Duration `yaml:"HEALTH_HISTORY" json:"HEALTH_HISTORY"`

	// Docket's keys, used by the job spool.
	SpoolDir    string   `yaml:"SPOOL_DIR" json:"SPOOL_DIR"`
	MergedName  string   `yaml:"MERGED_NAME" json:"MERGED_NAME"`
	TimeWindow  Duration `yaml:"TIME_WINDOW" json:"TIME_WINDOW"`
	ExpireTime  Duration `yaml:"EXPIRE_TIME" json:"EXPIRE_TIME"`
	ExpireSpace Size     `yaml:"EXPIRE_SPACE" json:"EXPIRE_SPACE"`
	CleanupTime Duration `yaml:"CLEANUP_TIME" json:"CLEANUP_TIME"`
	// MaxJobs (ours) is how many jobs run at once; the rest queue.
	// A pointer so that an explicit 0 is an error, not the default.
	MaxJobs *int `yaml:"MAX_JOBS" json:"MAX_JOBS"`

	// The spellings of Docket's deployment templates: the same settings.
	SensorsUpper  []Sensor `yaml:"STENOGRAPHER_INSTANCES" json:"STENOGRAPHER_INSTANCES"`
	CleanupPeriod Duration `yaml:"CLEANUP_PERIOD" json:"CLEANUP_PERIOD"`

	// Docket's keys for Flask, Celery, logging and its web server, which
	// one Go process has no use for; accepted so Docket's file works
	// unchanged, and named in Warnings.
	DocketOnly `yaml:",inline"`

	// Warnings are said once at start (not read from the file).
	Warnings []string `yaml:"-" json:"-"`
}

// DocketOnly holds the Docket keys stenofleet accepts and ignores.
type DocketOnly struct {
	Debug            any `yaml:"DEBUG" json:"DEBUG"`
	Testing          any `yaml:"TESTING" json:"TESTING"`
	SecretKey        any `yaml:"SECRET_KEY" json:"SECRET_KEY"`
	SessionCookie    any `yaml:"SESSION_COOKIE_NAME" json:"SESSION_COOKIE_NAME"`
	UseXSendfile     any `yaml:"USE_X_SENDFILE" json:"USE_X_SENDFILE"`
	LoggerName       any `yaml:"LOGGER_NAME" json:"LOGGER_NAME"`
	CeleryURL        any `yaml:"CELERY_URL" json:"CELERY_URL"`
	WebRoot          any `yaml:"WEB_ROOT" json:"WEB_ROOT"`
	PcapWebRoot      any `yaml:"PCAP_WEB_ROOT" json:"PCAP_WEB_ROOT"`
	LogLevel         any `yaml:"LOG_LEVEL" json:"LOG_LEVEL"`
	LogMsgFormat     any `yaml:"LOG_MSG_FORMAT" json:"LOG_MSG_FORMAT"`
	LogDateFormat    any `yaml:"LOG_DATE_FORMAT" json:"LOG_DATE_FORMAT"`
	LogDateUTC       any `yaml:"LOG_DATE_UTC" json:"LOG_DATE_UTC"`
	LogFile          any `yaml:"LOG_FILE" json:"LOG_FILE"`
	LogFileLevel     any `yaml:"LOG_FILE_LEVEL" json:"LOG_FILE_LEVEL"`
	LogFileMsgFormat any `yaml:"LOG_FILE_MSG_FORMAT" json:"LOG_FILE_MSG_FORMAT"`
	LogFileDate      any `yaml:"LOG_FILE_DATE_FORMAT" json:"LOG_FILE_DATE_FORMAT"`
	EmptyResult      any `yaml:"EMPTY_RESULT" json:"EMPTY_RESULT"`
	QueryFile        any `yaml:"QUERY_FILE" json:"QUERY_FILE"`
	NoRedis          any `yaml:"DOCKET_NO_REDIS" json:"DOCKET_NO_REDIS"`
	LongAgo          any `yaml:"LONG_AGO" json:"LONG_AGO"`
	IdleTime         any `yaml:"IDLE_TIME" json:"IDLE_TIME"`
	IdleSleep        any `yaml:"IDLE_SLEEP" json:"IDLE_SLEEP"`
	StatTimeout      any `yaml:"STAT_TIMEOUT" json:"STAT_TIMEOUT"`
	LockTimeout      any `yaml:"LOCK_TIMEOUT" json:"LOCK_TIMEOUT"`
	WeightThreshold  any `yaml:"WEIGHT_THRESHOLD" json:"WEIGHT_THRESHOLD"`
	WeightTotal      any `yaml:"WEIGHT_TOTAL" json:"WEIGHT_TOTAL"`
	WeightIPs        any `yaml:"WEIGHT_IPS" json:"WEIGHT_IPS"`
	WeightNets       any `yaml:"WEIGHT_NETS" json:"WEIGHT_NETS"`
	WeightPorts      any `yaml:"WEIGHT_PORTS" json:"WEIGHT_PORTS"`
	WeightHours      any `yaml:"WEIGHT_HOURS" json:"WEIGHT_HOURS"`
	DateFormat       any `yaml:"DATE_FORMAT" json:"DATE_FORMAT"`
	UUIDFormat       any `yaml:"UUID_FORMAT" json:"UUID_FORMAT"`
	FreeBytes        any `yaml:"FREE_BYTES" json:"FREE_BYTES"`
	FreeNodes        any `yaml:"FREE_NODES" json:"FREE_NODES"`
}

// ignored names the DocketOnly keys the file set.
func (d DocketOnly) ignored() []string {
	var out []string
	v := reflect.ValueOf(d)
	for i := range v.NumField() {
		if !v.Field(i).IsNil() {
			out = append(out, strings.Split(v.Type().Field(i).Tag.Get("json"), ",")[0])
		}
	}
	return out
}

// Sensor is one entry of stenographer_instances: where a sensor's HTTPS
// API is and the files stenofleet authenticates to it with.
type Sensor struct {
	Host string `yaml:"host" json:"host"`
	Name string `yaml:"sensor" json:"sensor"`
	Port int    `yaml:"port" json:"port"`
	Key  string `yaml:"key" json:"key"`
	Cert string `yaml:"cert" json:"cert"`
	CA   string `yaml:"ca" json:"ca"`
	// Tags (ours) name groups a query can select the sensor by.
	Tags []string `yaml:"tags" json:"tags"`
	// ServerName (ours) is the name checked in the sensor's certificate
	// when it differs from host (e.g. a certificate for 127.0.0.1 reached
	// through a tunnel). Default: host.
	ServerName string `yaml:"server_name" json:"server_name"`
}

// Addr is host:port.
func (s Sensor) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Error is a configuration error naming the key.
type Error struct {
	Key  string
	Line int // 0 when unknown
	Err  error
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("config: line %d: %s: %v", e.Line, e.Key, e.Err)
	}
	return fmt.Sprintf("config: %s: %v", e.Key, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Load reads and checks the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse reads a JSON object (the text starts with '{') or YAML.
func Parse(data []byte) (*Config, error) {
	var c Config
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return nil, jsonError(data, err)
		}
	} else {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil {
			return nil, yamlError(data, err)
		}
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return &c, nil
}

var jsonUnknown = regexp.MustCompile(`unknown field "([^"]*)"`)

func jsonError(data []byte, err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return &Error{Key: te.Field, Line: lineOf(data, te.Offset), Err: err}
	case errors.As(err, &se):
		return &Error{Key: "(syntax)", Line: lineOf(data, se.Offset), Err: err}
	}
	if m := jsonUnknown.FindStringSubmatch(err.Error()); m != nil {
		return &Error{Key: m[1], Err: errors.New("unknown key")}
	}
	return fmt.Errorf("config: %w", err)
}

var (
	yamlLine    = regexp.MustCompile(`line (\d+): (.*)`)
	yamlUnknown = regexp.MustCompile(`field (\S+) not found`)
)

// yamlError names the key of the line the YAML decoder reports: its
// messages name the Go type, not the key, for a bad value.
func yamlError(data []byte, err error) error {
	m := yamlLine.FindStringSubmatch(err.Error())
	if m == nil {
		return fmt.Errorf("config: %w", err)
	}
	n, _ := strconv.Atoi(m[1])
	lines := strings.Split(string(data), "\n")
	key := "(unknown key)"
	if n >= 1 && n <= len(lines) {
		l := strings.TrimLeft(strings.TrimSpace(lines[n-1]), "-{ ")
		if i := strings.IndexByte(l, ':'); i > 0 {
			key = l[:i]
		}
	}
	if f := yamlUnknown.FindStringSubmatch(m[2]); f != nil {
		key = f[1]
	}
	return &Error{Key: key, Line: n, Err: err}
}

func lineOf(data []byte, off int64) int {
	return bytes.Count(data[:min(int(off), len(data))], []byte("\n")) + 1
}

func (c *Config) check() error {
	if len(c.SensorsUpper) > 0 {
		if len(c.Sensors) > 0 {
			return &Error{Key: "STENOGRAPHER_INSTANCES", Err: errors.New("given as well as stenographer_instances; give one")}
		}
		c.Sensors, c.SensorsUpper = c.SensorsUpper, nil
	}
	if c.CleanupPeriod != 0 {
		if c.CleanupTime != 0 && c.CleanupTime != c.CleanupPeriod {
			return &Error{Key: "CLEANUP_PERIOD", Err: errors.New("differs from CLEANUP_TIME (the same setting); give one")}
		}
		c.CleanupTime = c.CleanupPeriod
	}
	if keys := c.DocketOnly.ignored(); len(keys) > 0 {
		c.Warnings = append(c.Warnings, "Docket keys with no meaning here, ignored: "+strings.Join(keys, ", "))
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return &Error{Key: "LISTEN", Err: err}
	}
	for key, v := range map[string]string{"TLS_CERT": c.TLSCert, "TLS_KEY": c.TLSKey, "CLIENT_CA": c.ClientCA} {
		if v == "" {
			return &Error{Key: key, Err: errors.New("required (analysts reach stenofleet over mutual TLS only)")}
		}
	}
	switch {
	case c.SensorTimeout != 0 && c.QueryTimeout != 0 && c.SensorTimeout != c.QueryTimeout:
		return &Error{Key: "SENSOR_TIMEOUT", Err: errors.New("differs from QUERY_TIMEOUT (the same setting); give one")}
	case c.SensorTimeout == 0:
		c.SensorTimeout = c.QueryTimeout
	}
	if c.SensorTimeout == 0 {
		c.SensorTimeout = Duration(DefaultSensorTimeout)
	}
	if err := c.checkHealth(); err != nil {
		return err
	}
	if c.MergedName == "" {
		c.MergedName = DefaultMergedName
	} else if strings.ContainsAny(c.MergedName, "/\x00") {
		return &Error{Key: "MERGED_NAME", Err: fmt.Errorf("%q is not a file name", c.MergedName)}
	}
	if c.MaxJobs == nil {
		n := DefaultMaxJobs
		c.MaxJobs = &n
	} else if *c.MaxJobs < 1 || *c.MaxJobs > MaxMaxJobs {
		return &Error{Key: "MAX_JOBS", Err: fmt.Errorf("%d is not 1-%d", *c.MaxJobs, MaxMaxJobs)}
	}
	if len(c.Sensors) == 0 {
		return &Error{Key: "stenographer_instances", Err: errors.New("no sensors")}
	}
	seen := map[string]bool{}
	for i := range c.Sensors {
		s := &c.Sensors[i]
		key := func(k string) string { return fmt.Sprintf("stenographer_instances[%d].%s", i, k) }
		if s.Name == "" {
			return &Error{Key: key("sensor"), Err: errors.New("required")}
		}
		if strings.ContainsAny(s.Name, ",= \t") {
			return &Error{Key: key("sensor"), Err: fmt.Errorf("%q: a name has no commas, '=' or spaces", s.Name)}
		}
		if seen[s.Name] {
			return &Error{Key: key("sensor"), Err: fmt.Errorf("%q named twice", s.Name)}
		}
		seen[s.Name] = true
		if s.Host == "" {
			return &Error{Key: key("host"), Err: errors.New("required")}
		}
		if s.Port == 0 {
			s.Port = DefaultSensorPort
		}
		if s.Port < 1 || s.Port > 65535 {
			return &Error{Key: key("port"), Err: fmt.Errorf("%d is not 1-65535", s.Port)}
		}
		for k, v := range map[string]string{"key": s.Key, "cert": s.Cert, "ca": s.CA} {
			if v == "" {
				return &Error{Key: key(k), Err: errors.New("required")}
			}
		}
		if s.ServerName == "" {
			s.ServerName = s.Host
		}
		for _, tag := range s.Tags {
			if tag == "" || strings.ContainsAny(tag, ",= \t") {
				return &Error{Key: key("tags"), Err: fmt.Errorf("%q: a tag is non-empty, without commas, '=' or spaces", tag)}
			}
		}
	}
	return nil
}

func (c *Config) checkHealth() error {
	if c.HealthInterval == 0 {
		c.HealthInterval = Duration(DefaultHealthInterval)
	}
	if c.HealthHistory == 0 {
		c.HealthHistory = Duration(DefaultHealthHistory)
	}
	iv, hist := time.Duration(c.HealthInterval), time.Duration(c.HealthHistory)
	if iv < MinHealthInterval {
		return &Error{Key: "HEALTH_INTERVAL", Err: fmt.Errorf("%v is shorter than %v", iv, MinHealthInterval)}
	}
	if hist < iv {
		return &Error{Key: "HEALTH_HISTORY", Err: fmt.Errorf("%v is shorter than HEALTH_INTERVAL (%v)", hist, iv)}
	}
	if hist/iv > MaxHealthSamples {
		c.Warnings = append(c.Warnings, fmt.Sprintf("HEALTH_HISTORY %v at HEALTH_INTERVAL %v is more than %d samples: the sensor page keeps the last %v",
			hist, iv, MaxHealthSamples, iv*MaxHealthSamples))
	}
	return nil
}

// Duration reads a number of seconds (Docket's form) or a Go duration
// ("90s", "12m", "48h").
type Duration time.Duration

func (d *Duration) set(s string) error {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		if n < 0 {
			return fmt.Errorf("%q is negative", s)
		}
		*d = Duration(n * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not seconds or a duration such as 90s, 12m, 48h", s)
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if err := d.set(n.Value); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error { return d.set(strings.Trim(string(b), `"`)) }

// Size reads a byte count, with an optional K/M/G/T suffix (powers of
// 1024, "B" optional: "500M", "2GB").
type Size int64

var sizeRE = regexp.MustCompile(`^(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?$`)

func (z *Size) set(s string) error {
	m := sizeRE.FindStringSubmatch(strings.ToUpper(strings.TrimSpace(s)))
	if m == nil {
		return fmt.Errorf("%q is not a size such as 1048576, 500M, 2GB", s)
	}
	n, _ := strconv.ParseFloat(m[1], 64)
	shift := map[string]uint{"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m[2]]
	*z = Size(n * float64(int64(1)<<shift))
	return nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (z *Size) UnmarshalYAML(n *yaml.Node) error {
	if err := z.set(n.Value); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (z *Size) UnmarshalJSON(b []byte) error { return z.set(strings.Trim(string(b), `"`)) }
