-- pool.lua -- a fixed pool of worker tasks draining a job list, with a
-- deadline on each job and one failing job that does not stop the rest.
--
--   ./build/spindle examples/pool.lua
--
-- Tasks share plain Lua tables safely: a task only loses control at an
-- await (sleep, join, timeout...), never between two Lua statements.

local spindle = require "spindle"

local jobs = {}
for i = 1, 10 do jobs[i] = {id = i, cost = 0.01 * (i % 4 + 1)} end
jobs[7].cost = 10  -- this one hangs: its deadline will cut it off
jobs[4].bad = true -- this one raises

local function handle(job)
  spindle.sleep(job.cost) -- stands in for real work that waits
  if job.bad then error(("job %d: malformed input"):format(job.id), 0) end
  return job.id * job.id
end

local results, errors = {}, {}
local next_job = 1

local function worker(name)
  local done = 0
  while next_job <= #jobs do
    local job = jobs[next_job]
    next_job = next_job + 1 -- no await in between: no other task can interfere
    local ok, res = pcall(spindle.timeout, 0.2, handle, job)
    if ok then
      results[job.id] = res
    else
      errors[#errors + 1] = ("%s gave up on job %d: %s"):format(name, job.id,
                                                               tostring(res))
    end
    done = done + 1
  end
  return done
end

local start = spindle.now()
local pool = {}
for i = 1, 3 do
  pool[i] = spindle.spawn(worker, "worker" .. i)
  pool[i]:name("worker" .. i)
end

local counts = {}
for i, h in ipairs(pool) do counts[i] = h:join() end
local elapsed = spindle.now() - start

print(("10 jobs, 3 workers, %.2f s"):format(elapsed))
print("jobs per worker: " .. table.concat(counts, ", "))
local squares = {}
for i = 1, #jobs do squares[#squares + 1] = tostring(results[i] or "-") end
print("results: " .. table.concat(squares, " "))
table.sort(errors)
for _, e in ipairs(errors) do print(e) end

assert(counts[1] + counts[2] + counts[3] == 10)
assert(results[7] == nil and results[4] == nil and results[10] == 100)
assert(#errors == 2)
assert(elapsed < 1, "the hung job must not hold the pool for 10 s")
