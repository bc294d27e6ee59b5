-- wrk script: POST /subscribe with a valid CSRF token and a new address on every request.
-- Arguments after "--": the form's csrf_token, the session cookie ("session=..."), a run prefix.
local threads = {}
local counter = 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  token = args[1]
  cookie = args[2]
  prefix = args[3]
end

function request()
  counter = counter + 1
  local body = "csrf_token=" .. token
    .. "&email=" .. prefix .. "-" .. tid .. "-" .. counter .. "%40bench.example"
    .. "&topics=digest&topics=early_access"
  return wrk.format("POST", "/subscribe", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Cookie"] = cookie,
  }, body)
end
