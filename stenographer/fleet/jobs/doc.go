// Package jobs runs stenofleet's asynchronous queries (Docket's /q API):
// a query is submitted once, runs in the background against the sensors
// and its merged PCAP is fetched later by id.
//
// Stage: analyst → fleet fan-out → spool → analyst. Input: a user's
// clauses and sensor selection. Output: <SpoolDir>/<id>/merged.pcap.
//
// # Identity and windows
//
// Clauses are AND-ed. Time clauses ("after 180m ago", "before
// 2017-04-30T00:00:00Z") are resolved to absolute times at submit and
// widened to whole TimeWindows (after floored, before ceiled); a missing
// "after" is 24 hours before now, a missing "before" the end of the
// current window (Docket's rules). The id is a hash of the owner, the
// selected sensors and the sorted, resolved clauses, so the same request
// in another clause order within the same window is the same job, and a
// result is reproducible: its query names absolute bounds only.
//
// # Spool layout
//
//	<SpoolDir>/<id>/job.json          state, written to .job.json.tmp and renamed
//	<SpoolDir>/<id>/.merged.pcap.tmp  result being written (never served)
//	<SpoolDir>/<id>/merged.pcap       complete result, renamed from the above
//
// Files whose names start with "." are never served and are removed when
// the job is run again.
//
// # State machine
//
//	Queued → Running → Completed (Partial when some sensors are missing)
//	                 → Failed    (the run failed or every sensor failed)
//
// A Failed job submitted again is queued again. On start (New) the spool
// is read back: Completed jobs whose merged.pcap exists are served again,
// Queued jobs are queued again in submission order, and Running jobs (the
// service stopped mid-run) lose their hidden files and are queued first.
// A run cancelled by the Manager's context leaves its job.json at Running
// so the next start re-runs it. Completed and Failed jobs expire by age
// (ExpireTime after they finished) and, oldest first, while the spool's
// file system has less than ExpireSpace bytes free; queued and running
// jobs never expire. The ids of expired jobs (the last
// RememberExpired, in memory only) answer 410 Gone instead of 404.
//
// # Metrics
//
// stenofleet_jobs_queued, stenofleet_jobs_running, stenofleet_spool_bytes
// (completed results only), stenofleet_jobs_finished_total{outcome} and
// stenofleet_jobs_expired_total{reason}, registered on Config.Registerer.
package jobs
