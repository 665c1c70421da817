-- wrk script for scripts/stock-upstream-overload: paced users and goodput.
--
--   wrk -t C -c C -s scripts/goodput.lua URL -- RATE SLO_MS C
--
-- Run it with as many threads as connections: each thread then has one
-- connection, so its requests and responses alternate and a response's
-- latency is the time since its thread's last request. After each answer
-- a connection waits an exponentially distributed think time of mean
-- C/RATE seconds, so that answered at once the C connections offer RATE
-- requests per second, Poisson-like; answered slowly they offer less, as
-- users waiting on a slow site do. A rejection is not retried at once.
-- done() prints one line of key=value pairs:
--   offered   responses per second, of any status
--   ok        200s per second
--   goodput   200s answered within SLO_MS, per second
--   rejected  429s and 503s per second
--   other     other statuses per second
--   errors    connect, read, write and timeout errors per second
--   ok_p50_ms, ok_p99_ms  latency of the 200s (1 ms buckets to 10 s)

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } goodput_timespec;
int clock_gettime(int clock, goodput_timespec *ts);
]]
local timespec = ffi.new("goodput_timespec")
local CLOCK_MONOTONIC = 1

local function now()
	ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
	return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end

local threads = {}

function setup(thread)
	thread:set("id", #threads + 1)
	table.insert(threads, thread)
end

function init(args)
	local rate, slo_ms, connections = tonumber(args[1]), tonumber(args[2]), tonumber(args[3])
	if not (rate and rate > 0 and slo_ms and slo_ms > 0 and connections and connections > 0) then
		error("usage: wrk -t C -c C -s goodput.lua URL -- RATE SLO_MS C")
	end
	slo = slo_ms / 1000
	think_mean_ms = connections * 1000 / rate
	math.randomseed(id * 7919)
	req = wrk.format()
	started = 0
	ok, good, rejected, other = 0, 0, 0, 0
	hist = {}
end

function delay()
	return -math.log(1 - math.random()) * think_mean_ms
end

function request()
	started = now()
	return req
end

function response(status, headers, body)
	local latency = now() - started
	if status == 200 then
		ok = ok + 1
		if latency <= slo then
			good = good + 1
		end
		local bucket = math.min(math.floor(latency * 1000), 10000)
		hist[bucket] = (hist[bucket] or 0) + 1
	elseif status == 429 or status == 503 then
		rejected = rejected + 1
	else
		other = other + 1
	end
end

local function quantile(hist, total, q)
	local seen = 0
	for ms = 0, 10000 do
		seen = seen + (hist[ms] or 0)
		if total > 0 and seen >= q * total then
			return ms + 1
		end
	end
	return 0
end

function done(summary, latency, requests)
	local sums = { ok = 0, good = 0, rejected = 0, other = 0 }
	local merged = {}
	for _, thread in ipairs(threads) do
		for key in pairs(sums) do
			sums[key] = sums[key] + thread:get(key)
		end
		for ms, n in pairs(thread:get("hist")) do
			merged[ms] = (merged[ms] or 0) + n
		end
	end
	local seconds = summary.duration / 1e6
	local e = summary.errors
	io.write(string.format(
		"RESULT offered=%.1f ok=%.1f goodput=%.1f rejected=%.1f other=%.1f errors=%.1f ok_p50_ms=%d ok_p99_ms=%d seconds=%.1f\n",
		summary.requests / seconds, sums.ok / seconds, sums.good / seconds, sums.rejected / seconds,
		sums.other / seconds, (e.connect + e.read + e.write + e.timeout) / seconds,
		quantile(merged, sums.ok, 0.5), quantile(merged, sums.ok, 0.99), seconds))
end
