package config

import (
	"strings"
	"testing"
	"time"
)

const docket = `
stenographer_instances:
  - { host: 127.0.0.1, sensor: sensor-001, port: 1234, key: /k.pem, cert: /c.pem, ca: /ca.pem }
  - host: 10.0.0.2
    sensor: dmz-1
    key: /k.pem
    cert: /c.pem
    ca: /ca.pem
    tags: [dmz]
SPOOL_DIR: /var/spool/stenofleet/
EXPIRE_TIME: 172800
EXPIRE_SPACE: 500M
QUERY_TIMEOUT: 720
TLS_CERT: /s.pem
TLS_KEY: /sk.pem
CLIENT_CA: /ca.pem
`

func TestDocketYAML(t *testing.T) {
	c, err := Parse([]byte(docket))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Sensors) != 2 || c.Sensors[0].Name != "sensor-001" || c.Sensors[1].Port != DefaultSensorPort ||
		c.Sensors[1].Tags[0] != "dmz" || c.Sensors[0].ServerName != "127.0.0.1" {
		t.Errorf("sensors: %+v", c.Sensors)
	}
	if c.SpoolDir != "/var/spool/stenofleet/" || time.Duration(c.ExpireTime) != 48*time.Hour ||
		c.ExpireSpace != 500<<20 || time.Duration(c.SensorTimeout) != 12*time.Minute || c.Listen != DefaultListen {
		t.Errorf("config: %+v", c)
	}
}

func TestMaxJobs(t *testing.T) {
	for _, tc := range []struct {
		extra string
		want  int
	}{
		{"", DefaultMaxJobs},
		{"MAX_JOBS: 1\n", 1},
		{"MAX_JOBS: 4\n", 4},
		{"MAX_JOBS: 64\n", MaxMaxJobs},
	} {
		c, err := Parse([]byte(docket + tc.extra))
		if err != nil {
			t.Errorf("%q: %v", tc.extra, err)
			continue
		}
		if *c.MaxJobs != tc.want {
			t.Errorf("%q: MaxJobs %d, want %d", tc.extra, *c.MaxJobs, tc.want)
		}
	}
}

func TestJSON(t *testing.T) {
	c, err := Parse([]byte(`{"stenographer_instances": [{"host": "h", "sensor": "s", "key": "k", "cert": "c", "ca": "a"}],
  "TLS_CERT": "x", "TLS_KEY": "y", "CLIENT_CA": "z", "SENSOR_TIMEOUT": "30s"}`))
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(c.SensorTimeout) != 30*time.Second {
		t.Errorf("SENSOR_TIMEOUT = %v", c.SensorTimeout)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	for _, c := range []struct{ edit, key string }{
		{"SPOOL_DIRR: /x\n", "SPOOL_DIRR"},
		{"EXPIRE_TIME: soon\n", "EXPIRE_TIME"},
		{"EXPIRE_SPACE: lots\n", "EXPIRE_SPACE"},
		{"LISTEN: nowhere\n", "LISTEN"},
		{"SENSOR_TIMEOUT: 5s\n", "SENSOR_TIMEOUT"},
		{"MAX_JOBS: 0\n", "MAX_JOBS"},
		{"MAX_JOBS: -1\n", "MAX_JOBS"},
		{"MAX_JOBS: 65\n", "MAX_JOBS"},
		{"MAX_JOBS: two\n", "MAX_JOBS"},
	} {
		_, err := Parse([]byte(docket + c.edit))
		if err == nil || !strings.Contains(err.Error(), c.key) {
			t.Errorf("%q: error %v does not name %s", c.edit, err, c.key)
		}
	}
	for _, c := range []struct{ text, key string }{
		{strings.Replace(docket, "port: 1234", "port: 99999", 1), "port"},
		{strings.Replace(docket, "port: 1234", "prot: 1234", 1), "prot"},
		{strings.Replace(docket, "sensor: dmz-1", "sensor: sensor-001", 1), "sensor"},
		{strings.Replace(docket, "TLS_CERT: /s.pem", "", 1), "TLS_CERT"},
		{`{"stenographer_instances": [], "bogus": 1}`, "bogus"},
		{`{"stenographer_instances": [{"host": "h", "sensor": "s", "port": "x"}]}`, "port"},
	} {
		_, err := Parse([]byte(c.text))
		if err == nil || !strings.Contains(err.Error(), c.key) {
			t.Errorf("error %v does not name %s", err, c.key)
		}
	}
}

// Docket's production template, as its deployment role writes it (the
// upper-case STENOGRAPHER_INSTANCES, Flask, Celery and logging keys,
// CLEANUP_PERIOD), plus only the three keys of stenofleet's own TLS.
const docketProd = `---
STENOGRAPHER_INSTANCES:
  - { host: 127.0.0.1, sensor: sensor-001, port: 1234, key: /k.pem, cert: /c.pem, ca: /ca.pem }
DEBUG: false
TESTING: false
SECRET_KEY: CHANGE_THIS
SESSION_COOKIE_NAME: DOCKET_SESSION
CELERY_URL: redis://localhost:6379
SPOOL_DIR: /var/spool/docket/
WEB_ROOT: /api
PCAP_WEB_ROOT: /results
LOGGER_NAME: docket
LOG_LEVEL: info
LOG_MSG_FORMAT: "[%(processName)-8s:%(thread)d] %(message)s"
LOG_DATE_FORMAT: '%FT%T.%fZ'
LOG_DATE_UTC: True
LOG_FILE: /var/log/docket/docket.log
TIME_WINDOW: 60
EMPTY_RESULT: 25B
MERGED_NAME: merged
QUERY_FILE: query
DOCKET_NO_REDIS: false
IDLE_TIME: 5.0
IDLE_SLEEP: 2.0
STAT_TIMEOUT: 3.0
QUERY_TIMEOUT: 720.0
LOCK_TIMEOUT: 2.0
EXPIRE_SPACE: 500MB
EXPIRE_TIME: 48h
CLEANUP_PERIOD: 1h
DATE_FORMAT: '%FT%T'
UUID_FORMAT: false
FREE_BYTES: 200MB
FREE_NODES: 10111
TLS_CERT: /s.pem
TLS_KEY: /sk.pem
CLIENT_CA: /ca.pem
`

func TestDocketProductionTemplate(t *testing.T) {
	c, err := Parse([]byte(docketProd))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Sensors) != 1 || c.Sensors[0].Name != "sensor-001" {
		t.Errorf("STENOGRAPHER_INSTANCES: %+v", c.Sensors)
	}
	if time.Duration(c.CleanupTime) != time.Hour || time.Duration(c.ExpireTime) != 48*time.Hour ||
		c.ExpireSpace != 500<<20 || time.Duration(c.TimeWindow) != time.Minute {
		t.Errorf("CLEANUP_PERIOD %v, EXPIRE_TIME %v, EXPIRE_SPACE %d, TIME_WINDOW %v", c.CleanupTime, c.ExpireTime, c.ExpireSpace, c.TimeWindow)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "CELERY_URL") || !strings.Contains(c.Warnings[0], "FREE_NODES") {
		t.Errorf("warnings %q, want one naming the ignored Docket keys", c.Warnings)
	}
	both := strings.Replace(docketProd, "DEBUG: false\n", "stenographer_instances: [{host: h, sensor: s, key: k, cert: c, ca: a}]\n", 1)
	if _, err := Parse([]byte(both)); err == nil || !strings.Contains(err.Error(), "STENOGRAPHER_INSTANCES") {
		t.Errorf("both spellings of the sensors: %v", err)
	}
}

func TestHealthKeys(t *testing.T) {
	for _, tc := range []struct {
		name, edit        string
		interval, history time.Duration
		errKey, warning   string
	}{
		{"defaults", "", DefaultHealthInterval, DefaultHealthHistory, "", ""},
		{"Go durations", "HEALTH_INTERVAL: 1s\nHEALTH_HISTORY: 10m\n", time.Second, 10 * time.Minute, "", ""},
		{"seconds, Docket's form", "HEALTH_INTERVAL: 60\nHEALTH_HISTORY: 86400\n", time.Minute, 24 * time.Hour, "", ""},
		{"more samples than kept", "HEALTH_INTERVAL: 1s\nHEALTH_HISTORY: 48h\n", time.Second, 48 * time.Hour, "", "keeps the last 1h8m16s"},
		{"too short an interval", "HEALTH_INTERVAL: 10ms\n", 0, 0, "HEALTH_INTERVAL", ""},
		{"negative", "HEALTH_INTERVAL: -5s\n", 0, 0, "HEALTH_INTERVAL", ""},
		{"not a duration", "HEALTH_HISTORY: forever\n", 0, 0, "HEALTH_HISTORY", ""},
		{"history shorter than the interval", "HEALTH_INTERVAL: 1m\nHEALTH_HISTORY: 30s\n", 0, 0, "HEALTH_HISTORY", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(docket + tc.edit))
			if tc.errKey != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errKey) {
					t.Fatalf("error %v does not name %s", err, tc.errKey)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if time.Duration(c.HealthInterval) != tc.interval || time.Duration(c.HealthHistory) != tc.history {
				t.Errorf("HEALTH_INTERVAL %v, HEALTH_HISTORY %v; want %v, %v",
					time.Duration(c.HealthInterval), time.Duration(c.HealthHistory), tc.interval, tc.history)
			}
			warned := strings.Join(c.Warnings, "\n")
			if (tc.warning == "") != (warned == "") || !strings.Contains(warned, tc.warning) {
				t.Errorf("warnings %q, want one containing %q", warned, tc.warning)
			}
		})
	}
}
