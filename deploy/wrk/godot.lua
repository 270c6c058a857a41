-- wrk -s deploy/wrk/godot.lua http://127.0.0.1:8000
-- Like many Godot games at once: POST /v1.0/events with batches of 1 to 50
-- events in the exact shape of the Pycolytics Godot plugin (no Content-Type,
-- Godot's User-Agent, the eight keys in its order), each batch from one
-- random player (WRK_DATA=identical: every event the same). See common.lua.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "common.lua")

godot_headers = { ["User-Agent"] = "GodotEngine/4.4.1.stable.official.49a5bc7b6 (Linux)", ["Accept"] = "*/*" }

-- batch returns the body of one request of n events of one player.
function batch(n)
  local events = {}
  local p = (not identical) and player() or nil
  for i = 1, n do events[i] = identical and identical_event() or realistic_event(p) end
  sent_events = sent_events + n
  return "[" .. table.concat(events, ",") .. "]"
end

function request()
  return wrk.format("POST", "/v1.0/events", godot_headers, batch(math.random(1, 50)))
end
