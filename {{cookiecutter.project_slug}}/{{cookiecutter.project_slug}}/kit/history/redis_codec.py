"""How a finished job's record is packed into one Redis string, and read back.

A record in a Redis hash costs about 1.5 KB: its timeline, payload and
result are longer than the 64 bytes Redis keeps in a compact hash, so every
field gets its own hash table entry, and the timeline repeats long JSON keys
and 17-digit times. A finished record is rarely written again, so the write
that finishes it (see ``redis_scripts``) packs it into one string, about
250 bytes for a small job's (a third of what the hash held), which Redis
keeps in about 440 bytes, key included:

* fields are ``<code><value>`` chunks ended by a ``\\x1e`` byte, ``B`` first:
  the record's base time (its enqueue time) in microseconds;
* times are microseconds from the base, a duration is microseconds, all in
  hexadecimal; a final status is one letter; a field that repeats another
  is left out (the time of the last status change when it is the finish
  time, the worker when the timeline's last start names it);
* a timeline line ``{"kind":"started","at":1796310161.087328,...`` becomes
  ``<started>8a83,...``, and the keys of its details (``,"worker":"``...) and
  the kinds of common events become one control byte each (``<started>``).
  JSON text never holds raw control bytes, so this loses nothing; a record
  whose text does hold one stays a hash.

Times are kept to the microsecond. Active records stay hashes (they change
at every step), and so do records written before packing existed: every
reader takes both. A write to a packed record unpacks it into a hash first,
and packs it again if it is still finished. The codec is Lua, shared by the
scripts (``CODEC_LUA`` is put in front of each), so Python only sees hashes'
fields. Packing costs the finishing write a few tens of microseconds of
Redis CPU: memory is what a long history runs out of first.
"""

CODEC_LUA = r"""
local CODES = {
  name = 'n', status = 's', payload = 'p', result = 'r', error = 'e', events = 'E',
  enqueued_at = 'q', state_at = 't', started_at = 'b', finished_at = 'f', eta = 'a',
  duration = 'd', attempt = 'A', worker = 'w', retry_of = 'o', retried_by = 'y',
  recovered = 'R',
}
local FIELD_OF = {}
for field, code in pairs(CODES) do FIELD_OF[code] = field end
local JSON = {payload = true, result = true, error = true, events = true}
local TIMES = {
  enqueued_at = true, state_at = true, started_at = true, finished_at = true, eta = true,
}
local FINAL = {
  complete = true, failed = true, retried = true, revoked = true, expired = true, cancelled = true,
}
-- Final statuses as one letter (a status name is never one letter long).
local STATUS_CODES = {
  complete = 'c', failed = 'f', retried = 'r', revoked = 'v', expired = 'x', cancelled = 'k',
}
local STATUS_OF = {}
for status, code in pairs(STATUS_CODES) do STATUS_OF[code] = status end
-- Pieces of timeline and error JSON, each replaced by one control byte: the
-- keys of details (with their comma, colon and opening quote), the start of
-- an error and the kinds of events that open a packed timeline line.
local KEY_TOKENS = {
  [',"worker":"'] = '\1', [',"duration":'] = '\2', [',"api_key_name":"'] = '\3',
  [',"error":'] = '\4', [',"message":"'] = '\5', [',"traceback":"'] = '\6', [',"job":"'] = '\7',
  [',"eta":'] = '\8', [',"by":"'] = '\14', [',"asked_at":'] = '\15',
}
local KIND_TOKENS = {
  queued = '\16', started = '\17', completed = '\18', failed = '\19', retrying = '\20',
  scheduled = '\21', worker_lost = '\22', retried = '\23', cancelled = '\24',
}
local UNTOKEN = {['\25'] = '{"type":"'}
for text, byte in pairs(KEY_TOKENS) do UNTOKEN[byte] = text end
for kind, byte in pairs(KIND_TOKENS) do UNTOKEN[byte] = kind .. '\31' end

-- One pass per piece of text, whatever the number of tokens: scripts run
-- on every write, so their cost counts. (Lua tries a pattern at every
-- position of the text: plain searches, where they do, are far cheaper.)
local function tokens(text)
  text = string.gsub(text, ',"[%w_]+":"?', KEY_TOKENS)
  if not string.find(text, '{"type":"', 1, true) then return text end
  return (string.gsub(text, '{"type":"', '\25'))
end
local function untokens(text) return (string.gsub(text, '%c', UNTOKEN)) end

-- The pieces of a text between separators, empty ones left out.
local function pieces(text, separator)
  local found, start = {}, 1
  while true do
    local stop = string.find(text, separator, start, true)
    local piece = string.sub(text, start, (stop or 0) - 1)
    if piece ~= '' then found[#found + 1] = piece end
    if not stop then return found end
    start = stop + 1
  end
end
-- The text that follows ``key`` in a line, up to the first ``stop`` character.
local function after(line, key, stop)
  local at = string.find(line, key, 1, true)
  return at and string.match(line, '^([^' .. stop .. ']+)', at + #key)
end

-- Whole numbers in hexadecimal: shorter than decimal, and written by C code.
local function hex(n)
  if n < 0 then return '-' .. string.format('%x', -n) end
  return string.format('%x', n)
end
local function from_hex(text)
  if string.byte(text, 1) == 45 then return -tonumber(string.sub(text, 2), 16) end -- '-'
  return tonumber(text, 16)
end
local function seconds(us) return string.format('%.6f', us / 1e6) end
-- A time or duration in whole microseconds, if the text is a usable number.
-- The whole seconds apart, so that rounding sees the fraction's own digits
-- (as Python's round() does for the timeline's times).
local function micros(text)
  local n = tonumber(text)
  if n and n == n and math.abs(n) < 9e9 then
    local whole = math.floor(n)
    return whole * 1e6 + math.floor((n - whole) * 1e6 + 0.5)
  end
end

-- What a timeline (JSON lines) says of the last run: when its last start
-- was and on which worker, when its last line was and the duration that
-- line gives. A field equal to one of these is packed empty and read back
-- from the timeline; both ways read lines that differ only in how their
-- times are written, so they find the same values.
local FROM_TIMELINE = {started_at = 'started', finished_at = 'at', duration = 'duration'}
local function timeline_facts(events)
  local facts = {}
  for _, line in ipairs(pieces(events or '', '\n')) do
    local kind, at = string.match(line, '^{"kind":"([%w_]+)","at":([^,}]+)')
    facts.at = at and micros(at)
    facts.duration = micros(after(line, ',"duration":', ',}') or '')
    if kind == 'started' then
      facts.started = facts.at
      facts.worker = after(line, ',"worker":"', '"\\')
    end
  end
  return facts
end

-- The record of a job as one string, or nil if it cannot be packed.
local function packed(rec)
  local base = micros(rec.enqueued_at or rec.state_at or '')
  if not base then return nil end
  local facts = timeline_facts(rec.events)
  -- B: the base is the enqueue time; Z: the record has none, the base is
  -- its last status change.
  local parts = {(rec.enqueued_at and 'B' or 'Z') .. hex(base)}
  for field, value in pairs(rec) do
    -- JSON text never holds raw control bytes; other text might.
    if string.find(field, '%c') or (not JSON[field] and string.find(value, '%c')) then
      return nil
    end
    local skip = false
    if TIMES[field] or field == 'duration' then
      local us = micros(value)
      if not us then return nil end
      if us == facts[FROM_TIMELINE[field]] then
        value = ''
      else
        value = hex(TIMES[field] and us - base or us)
      end
      -- The enqueue time is most often the base, and the time of the last
      -- status change the finish time.
      skip = (field == 'enqueued_at' and value == '0')
        or (field == 'state_at' and rec.finished_at == rec.state_at)
    elseif field == 'events' then
      local lines = {}
      for _, line in ipairs(pieces(value, '\n')) do
        local kind, at, rest = string.match(line, '^{"kind":"([%w_]+)","at":([%d%.]+)([,}].*)$')
        local us = at and micros(at)
        if us then
          lines[#lines + 1] = (KIND_TOKENS[kind] or kind .. '\31') .. hex(us - base) .. tokens(rest)
        else
          lines[#lines + 1] = tokens(line)
        end
      end
      value = table.concat(lines, '\n')
    elseif field == 'error' then
      value = tokens(value)
    elseif field == 'status' then
      value = STATUS_CODES[value] or value
    elseif field == 'worker' then
      if value == '' then return nil end -- an empty worker means "the timeline's"
      if value == facts.worker then value = '' end
    end
    if not skip then
      local code = CODES[field]
      parts[#parts + 1] = code and code .. value or '~' .. field .. '\31' .. value
    end
  end
  return table.concat(parts, '\30') .. '\30'
end

-- A packed record's fields, as its hash would hold them (the timeline only
-- if asked for: a list page does not show it).
local function unpacked(text, with_events)
  local rec, base = {}, 0
  for _, chunk in ipairs(pieces(text, '\30')) do
    local code, value = string.sub(chunk, 1, 1), string.sub(chunk, 2)
    if code == 'B' or code == 'Z' then
      base = from_hex(value)
      if code == 'B' then rec.enqueued_at = '0' end
    elseif code == '~' then
      local field, rest = string.match(value, '^([^\31]*)\31(.*)$')
      rec[field] = rest
    elseif FIELD_OF[code] then
      rec[FIELD_OF[code]] = value
    end
  end
  if rec.events then
    local lines = {}
    for _, line in ipairs(pieces(rec.events, '\n')) do
      line = untokens(line)
      local kind, rel, rest = string.match(line, '^([%w_]+)\31(%-?%w+)(.*)$')
      if kind then
        line = '{"kind":"' .. kind .. '","at":' .. seconds(base + from_hex(rel)) .. rest
      end
      lines[#lines + 1] = line .. '\n'
    end
    rec.events = table.concat(lines)
  end
  local facts = timeline_facts(rec.events)
  for field, value in pairs(rec) do
    if TIMES[field] or field == 'duration' then
      local us = facts[FROM_TIMELINE[field]]
      if value ~= '' then us = from_hex(value) + (TIMES[field] and base or 0) end
      rec[field] = us and seconds(us) or nil
    end
  end
  if rec.worker == '' then rec.worker = facts.worker end
  rec.state_at = rec.state_at or rec.finished_at
  if rec.status then rec.status = STATUS_OF[rec.status] or rec.status end
  if rec.error then rec.error = untokens(rec.error) end
  if not with_events then rec.events = nil end
  return rec
end

-- A record's fields whichever way it is kept; nil if there is none.
local function load(key)
  local kind = redis.call('TYPE', key).ok
  if kind == 'string' then return unpacked(redis.call('GET', key), true) end
  if kind ~= 'hash' then return nil end
  local flat, rec = redis.call('HGETALL', key), {}
  for i = 1, #flat, 2 do rec[flat[i]] = flat[i + 1] end
  return rec
end

-- Pack a finished record's hash into its string (it stays a hash if it cannot be).
local function pack(key)
  local flat, rec = redis.call('HGETALL', key), {}
  for i = 1, #flat, 2 do rec[flat[i]] = flat[i + 1] end
  local text = packed(rec)
  if text then redis.call('SET', key, text) end
end

-- Turn a packed record back into a hash, for a write to change it.
local function unpack_to_hash(key, rec)
  local flat = {}
  for field, value in pairs(rec) do
    flat[#flat + 1] = field
    flat[#flat + 1] = value
  end
  redis.call('DEL', key)
  if #flat > 0 then redis.call('HSET', key, unpack(flat)) end
end

-- One field of a record, without unpacking the rest (name and error only).
local function field_of(key, field)
  local text = redis.pcall('GET', key)
  if type(text) == 'table' then return redis.call('HGET', key, field) end -- a hash
  if not text then return nil end
  local start = string.find(text, '\30' .. CODES[field], 1, true)
  if not start then return nil end
  return untokens(string.sub(text, start + 2, string.find(text, '\30', start + 2, true) - 1))
end
"""

# Reads records, packed or not. KEYS: the records. ARGV: the fields wanted,
# or none for all of them. Returns, per record, the values of the fields
# asked for (false where missing), or all its fields as name, value pairs.
READ_LUA = (
    CODEC_LUA
    + r"""
local out = {}
for i, key in ipairs(KEYS) do
  local row = {}
  if #ARGV == 0 then
    for field, value in pairs(load(key) or {}) do
      row[#row + 1] = field
      row[#row + 1] = value
    end
  elseif redis.call('TYPE', key).ok == 'string' then
    local rec = unpacked(redis.call('GET', key), false)
    for j, field in ipairs(ARGV) do row[j] = rec[field] or false end
  else
    row = redis.call('HMGET', key, unpack(ARGV))
  end
  out[i] = row
end
return out
"""
)
