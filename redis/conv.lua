-- redis/conv.lua -- conversations and messages: the log, idempotency, survey answers, outbound
-- copies, bounded work streams (a part of the chatgw library: redis/lib.lua).

--[[

FCALL cg_message 1 <tenant> <map>
  One message stored: a customer's, an agent's or a channel's (the gateway), or the desk's own
  (the router). <map>, a msgpack map of named fields:
  conv     conversation id; may be '' for role customer (use the customer's open conversation)
  cmid     client message id ('' = none): a repeated cmid answers the first seq with dup = 1
  role     customer | agent | system | bot | bridge
  sender   customer id / agent id / router id
  payload  msgpack msg (its seq/conv fields are not authoritative)
  type     optional: the payload's type (text, attachment, ...): with it the payload is decoded
           only when a rule needs more (a survey answer of a closed conversation, an outbound
           copy), not on every message
  newconv  id to use when a new conversation must be opened for a customer
  channel  channel name stored on a new conversation
  now      unix ms
  mode     log (append + cg:in + publish) | sys (append + publish) | eph (publish only, seq 0)
  preview  optional: first words of a customer text, kept once per conversation (HSETNX)
  attrs    optional map: where the desk's replies go, stored on cg:conv:<conv> when a customer
           message is stored (mode log, not a dup): chat_id (HSET: the platform address,
           meta.platform_chat_id), chat_name (HSET), subject (HSETNX), mail_root (HSETNX: the
           thread's first Message-ID), mail_last (HSET: the customer's latest Message-ID). Any
           other name: BADARG.
  -> answer 'stored' with conv, seq, dup   dup = 1 when cmid was already accepted (nothing
     stored again)
The event functions (event.lua) store their messages with the same code, cg_append(keys, args):
args positional in the order above (attrs as name/value pairs after preview), answering
{conv, seq, dup}.

Outbound to channel bridges: when a message with a text or attachments (texts, and events that
carry one: "assigned" with "<agent> has joined", "closed" with closed_text) of role agent, system
or bot is stored (mode log or sys) in a conversation whose channel is not web, it is also added,
in the same call, to cg:out:<channel> (read by the gateways' bridge sessions, group bridges):
  XADD cg:out:<channel> * c <conv> s <seq> m <payload> [t chat_id] [n chat_name] [j subject]
                          [r mail_root] [l mail_last]
(the address fields as the conversation holds them at that moment). Events without a text are not
sent to bridges: platforms have nothing to show for them; nor are the desk-only events
"transferred", "classified" and "escalated" (their text is for the desk).

Rules:
  customer, conv ''   -> cg:cust:<sender>.conv unless missing or closed; then newconv is opened
                         (state new) -- except in mode eph, which never opens one ({'', 0, 0})
  customer, conv X    -> X must be the customer's (else NOTYOURS); a closed X opens newconv
                         (writing after close starts a new conversation; eph on it is a no-op)
  survey answers      -> except (mode log) an answer to the satisfaction survey of a closed
                         conversation (conv X, or the customer's latest when ''), while now_ms <=
                         its survey_until (set by the router when it sends the survey): a
                         `rating` message (rating 1..5), or on a channel other than web a text
                         that is just one digit 1-5 (ASCII or full-width, surrounding whitespace
                         allowed). It is appended to the closed conversation (no new one is
                         opened) and stored: HSET rating, rated_at; its cg:in entry gets the
                         field r = the rating (the router thanks only for those). A `rating`
                         message for a closed conversation outside its survey window (or with
                         no conversation at all): CLOSED.
  agent               -> X must be assigned to the sender (NOTASSIGNED), not closed (CLOSED)
  system, bot, bridge -> X must exist (NOCONV)
Errors: NOTYOURS, NOTASSIGNED, CLOSED, NOCONV, BADARG (first word of the error reply).
Publish payload on cg:c:<conv>: 8-byte big-endian seq (0 for eph) followed by payload.

Desk metrics (mode log, not a dup): a customer message (not a rating) starts a wait on the
conversation (await_since = now_ms) unless one runs; an agent message ends it (answers = 1) and
adds now_ms - await_since to response_ms/_n of cg:kpi:queue:<queue> and cg:kpi:agent:<sender>.
A survey answer counts rated (first rating of the conversation) and csat_good (4-5; a replaced
rating moves it) for the conversation's queue and closing agent (kpi_response, kpi_rating).
]]

local IDEM_TTL = 86400

-- Reply-address attributes a customer message may set on its conversation, and how.
local ATTRS = {chat_id = 'HSET', chat_name = 'HSET', subject = 'HSETNX', mail_root = 'HSETNX',
    mail_last = 'HSET'}
-- The same attributes as copied into a cg:out entry (short field names).
local OUT_FIELDS = {{'chat_id', 't'}, {'chat_name', 'n'}, {'subject', 'j'}, {'mail_root', 'r'},
    {'mail_last', 'l'}}


-- The payload as a table, or nil when it does not decode.
local function decode(payload)
    local ok, m = pcall(cmsgpack.unpack, payload)
    return (ok and type(m) == 'table') and m or nil
end

-- The message to store as the rules need it: the decoded payload, or (cg_message, which knows
-- the message's type) a stand-in {type = ..., lazy = payload} that msg_full decodes only when a
-- rule needs more than the type: a survey answer of a closed conversation, an outbound copy.
-- The steady state decodes nothing.
local function msg_full(m)
    if m and m.lazy then return decode(m.lazy) end
    return m
end

-- Open a new conversation `conv` for customer `sender` and make it the customer's current one.
-- Its fields go into w, the conversation's writes cg_append makes in one HSET at its end.
local function open_conv(conv, sender, channel, now, w)
    w.state, w.customer, w.channel, w.created = 'new', sender, channel, now
    redis.call('HSET', CG.KEY.cust(sender), 'conv', conv)
    cust_convs_add(sender, conv, now)
    return conv
end

-- The rating (1..5) payload gives as an answer to the survey of closed conv, or nil: a `rating`
-- message, or (not on web) a text of one digit 1-5, ASCII or full-width, within the window.
local function survey_answer(c, m, now)
    if not c.survey_until or (tonumber(now) or 0) > (tonumber(c.survey_until) or 0) then
        return nil
    end
    if not m then return nil end
    if m.type == 'rating' then
        local n = tonumber(m.rating)
        if n and n >= 1 and n <= 5 then return n end
        return nil
    end
    if m.type ~= 'text' or c.channel == 'web' or type(m.text) ~= 'string' then return nil end
    local t = string.match(m.text, '^%s*(.-)%s*$')
    local d = string.match(t, '^[1-5]$')
    if d then return tonumber(d) end
    d = string.match(t, '^\239\188([\145-\149])$') -- U+FF11..U+FF15
    if d then return string.byte(d) - 144 end
    return nil
end

-- Resolve the conversation a customer writes to. Returns conv ('' when none and none may be
-- opened), the survey rating it answers (or nil) and its fields (conv_fields), or nil,
-- error_reply. m: the decoded payload (nil when it does not decode).
-- Reads only: the conversation a customer message goes to, checked. Returns conv, rating, c,
-- opening: conv '' (mode eph with nothing open: nothing to do), rating when the message answers
-- the survey of closed conv, c its conv_fields, opening true when newconv is to be opened (by
-- the caller, after the idempotency claim); or nil, error reply.
local function customer_conv(conv, sender, newconv, channel, now, mode, m)
    local named = conv ~= ''
    if not named then conv = redis.call('HGET', CG.KEY.cust(sender), 'conv') or '' end
    local c = conv ~= '' and conv_fields(conv) or {}
    if named and c.customer ~= sender then
        return nil, redis.error_reply('NOTYOURS conversation is not yours')
    end
    if conv ~= '' and c.state ~= 'closed' then return conv, nil, c end
    if mode == 'eph' then return '' end
    local rating = conv ~= '' and survey_answer(c, msg_full(m), now)
    if rating then return conv, rating, c end
    if m and m.type == 'rating' then -- never opens a conversation
        return nil, redis.error_reply('CLOSED conversation is closed and its survey is over')
    end
    if newconv == '' then
        return nil, redis.error_reply('BADARG newconv is required to open a conversation')
    end
    return newconv, nil, {customer = sender, state = 'new', channel = channel, created = now}, true
end

-- Check an agent may write to conv (c: its conv_fields). Returns true or nil, error_reply.
local function agent_check(c, sender)
    if c.agent ~= sender then
        return nil, redis.error_reply('NOTASSIGNED conversation is not assigned to you')
    end
    if c.state == 'closed' then
        return nil, redis.error_reply('CLOSED conversation is closed')
    end
    if c.state ~= 'assigned' then
        return nil, redis.error_reply('NOTASSIGNED conversation is not assigned to you')
    end
    return true
end

-- ---- desk metrics (kpi_add: redis/desk.lua) -------------------------------------------

-- Response times, counted here and not in the router: cg_append stores every customer and agent
-- message once, in log order and stamped with its own time, so this is exact with any number of
-- routers and costs no round trip (one HEXISTS per customer message, one HMGET per agent
-- message; the writes below once per answered customer turn).
-- A customer message (text, attachment; not a rating) starts a wait (await_since) unless one
-- runs; the next agent message answers it: now - await_since goes to response_ms/_n of the
-- conversation's queue and of the agent, and the conversation's answers becomes 1 (once).
-- w: the conversation's writes cg_append makes in one HSET.
local function kpi_response(conv, role, sender, m, now, c, w)
    local k = CG.KEY.conv(conv)
    if role == 'customer' then
        if c.await_since or (m and m.type == CG.MT.rating) then return end
        w.await_since = now
        return
    end
    if not c.await_since then return end
    local ms = (tonumber(now) or 0) - (tonumber(c.await_since) or 0)
    w.await_since = '' -- ended (conv_fields reads '' as none): one HSET, no HDEL
    -- answers: 1 once an agent answered a wait (kpi_close: abandoned); not counted further, so
    -- that the turns after the first write nothing for it
    if (tonumber(c.answers) or 0) == 0 then w.answers = 1 end
    -- the agent is in cg:kpi:agents once it answered in this assignment (agent_answered)
    local known = c.answered_no ~= nil and c.answered_no == c.assign_no and not c.first_answer
    if not known and sender ~= '' then redis.call('SADD', CG.KEY.kpi_agents(), sender) end
    -- held in the conversation until it closes (rt_add, redis/desk.lua)
    w.rt = rt_add(conv, c, c.queue or '', sender, ms > 0 and ms or 0)
end

-- Closed conv got (or changed) its survey rating: rated / csat_good (4-5) of its queue and of
-- the agent who closed it, so that each conversation counts once, with its current rating.
local function kpi_rating(conv, rating)
    local h = redis.call('HMGET', CG.KEY.conv(conv), 'rating', 'queue', 'agent')
    local old = tonumber(h[1])
    local good = (rating >= 4 and 1 or 0) - ((old and old >= 4) and 1 or 0)
    kpi_add(h[2], h[3], {'rated', old and 0 or 1, 'csat_good', good})
end

-- args[11..]: attr/value pairs. Returns true, or nil and an error reply.
local function attrs_check(args)
    if #args > 10 and (#args - 10) % 2 ~= 0 then
        return nil, redis.error_reply('BADARG attributes come in name/value pairs')
    end
    for i = 11, #args, 2 do
        if not ATTRS[args[i]] then
            return nil, redis.error_reply('BADARG unknown attribute ' .. args[i])
        end
    end
    return true
end

local function attrs_store(conv, args)
    for i = 11, #args, 2 do
        if args[i + 1] ~= '' then
            redis.call(ATTRS[args[i]], CG.KEY.conv(conv), args[i], args[i + 1])
        end
    end
end

-- A desk message of a conversation on a bridged channel: also to cg:out:<channel>.
local function outbound(conv, seq, role, payload, m, channel)
    if role ~= 'agent' and role ~= 'system' and role ~= 'bot' then return end
    if not channel or channel == 'web' then return end
    m = msg_full(m)
    if not m or (not m.text and not m.attachments) then return end
    -- desk-only events (the schema's internal types, as msg_type_is_internal)
    if CG.INTERNAL[m.type] then return end
    local names = {}
    for i, f in ipairs(OUT_FIELDS) do names[i] = f[1] end
    local vals = redis.call('HMGET', CG.KEY.conv(conv), unpack(names))
    local argv = {CG.KEY.out(channel), '*', 'c', conv, 's', seq, 'm', payload}
    for i, f in ipairs(OUT_FIELDS) do
        if vals[i] then
            argv[#argv + 1] = f[2]
            argv[#argv + 1] = vals[i]
        end
    end
    redis.call('XADD', unpack(argv))
end

-- ---- the steady state (sla_customer, sla_agent: redis/desk.lua) ------------------------

-- True for a text or an attachment (not a rating, a command or an event).
local function is_content(m)
    return m ~= nil and (m.type == CG.MT.text or m.type == CG.MT.attachment)
end

-- The time (ms) of the last message of either side in conv: a customer's or an agent's text or
-- attachment among the log's newest ACT_SCAN entries, nil when there is none. Read when an idle
-- timer fires (cg_close_fire), so that no message writes anything for the idle close.
local ACT_SCAN = 64
local function last_activity(conv)
    local entries = redis.call('XREVRANGE', CG.KEY.conv_log(conv), '+', '-', 'COUNT', ACT_SCAN)
    for _, e in ipairs(entries) do
        local f = e[2]
        for i = 1, #f - 1, 2 do
            if f[i] == 'm' then
                local m = decode(f[i + 1])
                if is_content(m) and (m.role == 'customer' or m.role == 'agent') then
                    return tonumber(m.ts)
                end
            end
        end
    end
    return nil
end

-- The steady state: a customer's or its agent's text in an assigned conversation needs no router
-- (no classification, no queue, no reply from the desk), only its timers, which cg_append sets
-- here: the response SLAs (sla_customer / sla_agent above); the idle close goes by the
-- log's last message (last_activity). The entry
-- then does not go to cg:in. Taken only when the routers published the desk's timings
-- (cg:deskcfg, as desk_timings remembers it: ready, first_s:<channel>, next_s:<channel>,
-- idle_close_s) and the queue does not count business hours (hours:<queue> set: the router
-- computes those deadlines). Returns true
-- when done here.
local function steady(conv, role, sender, now, c, w)
    if c.state ~= 'assigned' then return false end
    local d = desk_timings()
    local ch = c.channel or ''
    if d.ready ~= '1' or d['hours:' .. (c.queue or '')] then return false end
    local t = tonumber(now) or 0
    if role == 'customer' then
        local first, nxt = tonumber(d['first_s:' .. ch]) or 0, tonumber(d['next_s:' .. ch]) or 0
        sla_customer(conv, first > 0 and t + first * 1000 or 0, nxt > 0 and t + nxt * 1000 or 0, c)
    else
        sla_agent(conv, now, sender, c, w)
    end
    -- the idle close: its timer (armed at the assignment) is not moved; a timer that fires
    -- early re-arms itself from the log's last message (cg_close_fire, last_activity)
    return true
end

-- True when the entry seq of conv's log is the message cmid of sender.
local function log_holds(conv, seq, cmid, sender)
    local id = seq .. '-0'
    local e = redis.call('XRANGE', CG.KEY.conv_log(conv), id, id)[1]
    local f = e and e[2] or {}
    for i = 1, #f - 1, 2 do
        if f[i] == 'm' then
            local m = decode(f[i + 1])
            return m ~= nil and m.cmid == cmid and m.sender_id == sender
        end
    end
    return false
end

-- The conversation a customer's or an agent's message went to when its idempotency key holds
-- only its number seq: the conversation the message named (the value is written so then, 33
-- bytes fewer per message). A retry names the same one, unless it came through another
-- connection after the customer's conversation changed: then the first of convs (the retry's
-- named and resolved conversations) and of the customer's newest DUP_SCAN ones whose log entry
-- seq is this message. Runs only for a duplicate.
local DUP_SCAN = 10
local function dup_conv(seq, role, sender, cmid, convs)
    local tried = {}
    local function holds(c)
        if c == '' or tried[c] then return false end
        tried[c] = true
        return log_holds(c, seq, cmid, sender)
    end
    for _, c in ipairs(convs) do
        if holds(c) then return c end
    end
    if role == 'customer' then
        for _, c in ipairs(redis.call('ZREVRANGE', CG.KEY.cust_convs(sender), 0, DUP_SCAN - 1)) do
            if holds(c) then return c end
        end
    end
    for _, c in ipairs(convs) do
        if c ~= '' then return c end
    end
    return ''
end

-- The answer to a message whose idempotency key already holds seen: {conv, seq, 1}. seen is
-- "conv:seq" (a customer's or an agent's message stored elsewhere than the conversation it
-- named), or "seq": the desk's own message in conv (per-conversation key: role nil), or a
-- customer's or an agent's stored in the conversation it named (dup_conv finds it among named
-- and resolved, the conversations this try named and resolved to).
local function dup_answer(seen, conv, role, sender, cmid, named, resolved)
    local c, q = string.match(seen, '^(.*):(%d+)$')
    if c then return {c, tonumber(q), 1} end
    local seq = tonumber(seen) or 0
    if role then conv = dup_conv(seq, role, sender, cmid, {named, resolved or ''}) end
    return {conv, seq, 1}
end

-- An error for a message, unless it is a retry of one already accepted: then its dup answer
-- (the idempotency key is looked up only on this path; role, sender, cmid, named: dup_answer's).
local function refuse(idem, err, conv, role, sender, cmid, named)
    local seen = idem and redis.call('GET', idem)
    if seen then return dup_answer(seen, conv, role, sender, cmid, named) end
    return err
end

local function cg_append(keys, args, mtype)
    local conv, cmid, role, sender, payload = args[1], args[2], args[3], args[4], args[5]
    local newconv, channel, now, mode = args[6], args[7], args[8], args[9]
    local preview = args[10] or ''
    if mode ~= 'log' and mode ~= 'sys' and mode ~= 'eph' then
        return redis.error_reply('BADARG mode must be log, sys or eph')
    end
    if payload == nil or now == nil then
        return redis.error_reply('BADARG 9 arguments expected')
    end
    local aok, aerr = attrs_check(args)
    if not aok then return aerr end

    -- Idempotency. A customer's or an agent's client message id is unique per sender (never per
    -- conversation): claimed below, before a conversation is opened, so a retried first message
    -- (another connection, another gateway, after the last chat closed) finds the conversation
    -- its first try opened, and a re-send after a close is a duplicate. The desk's own messages
    -- (deterministic cmids such as cg:greet) are unique per conversation.
    local idem, own -- own: the sender's key (customer, agent), else per conversation
    local named = conv
    if cmid ~= '' and mode ~= 'eph' and (role == 'customer' or role == 'agent') then
        idem, own = CG.KEY.idem_sender(role, sender, cmid), role
    end

    -- Where it goes, checked (reads only).
    local m
    if mode ~= 'eph' then m = mtype and {type = mtype, lazy = payload} or decode(payload) end
    local err, rating, c, opening
    if role == 'customer' then
        conv, err, c, opening = customer_conv(conv, sender, newconv, channel, now, mode, m)
        if not conv then return refuse(idem, err, '', own, sender, cmid, named) end
        rating = err
        if conv == '' then return {'', 0, 0} end
    elseif role == 'agent' then
        c = conv ~= '' and conv_fields(conv) or {}
        local ok
        ok, err = agent_check(c, sender)
        if not ok then return refuse(idem, err, conv, own, sender, cmid, named) end
    elseif role == 'system' or role == 'bot' or role == 'bridge' then
        c = conv ~= '' and conv_fields(conv) or {}
        if not c.state then return redis.error_reply('NOCONV no such conversation') end
    else
        return redis.error_reply('BADARG unknown role')
    end

    if mode == 'eph' then
        redis.call('PUBLISH', CG.KEY.ch_conv(conv), struct.pack('>I8', 0) .. payload)
        return {conv, 0, 0}
    end

    -- The claim: one SET NX GET stores the answer this message gets (its number, known in
    -- advance; with its conversation unless that is the one the message named) unless the key
    -- holds an earlier try's answer, which is returned instead.
    local seq, run
    if opening then seq, run = 1, run_name() else seq, run = seq_plan(c) end
    local sq = fmt(seq) -- as written in the keys and fields below: formatted once
    local value = sq
    if own then
        if conv ~= named then value = conv .. ':' .. sq end
    elseif cmid ~= '' then
        idem = CG.KEY.idem(conv, cmid)
    end
    if idem then
        local ttl = tonumber(desk_timings().idem_ttl_s) or IDEM_TTL -- idempotency_ttl_s
        local seen = redis.call('SET', idem, value, 'NX', 'GET', 'EX', ttl)
        if seen then return dup_answer(seen, conv, own, sender, cmid, named, conv) end
    end

    local w = {seq = sq} -- the conversation's writes: one HSET at the end
    if run then w.ep = run end
    if opening then open_conv(conv, sender, channel, now, w) end
    redis.call('XADD', CG.KEY.conv_log(conv), sq .. '-0', 'm', payload)
    if mode == 'log' and rating then -- r: this message was taken as the survey's answer
        redis.call('XADD', CG.KEY.inbound(), '*', 'c', conv, 's', sq, 'm', payload, 'r', rating)
    elseif mode == 'log' and not ((role == 'customer' or role == 'agent') and is_content(m) and
        steady(conv, role, sender, now, c, w)) then
        redis.call('XADD', CG.KEY.inbound(), '*', 'c', conv, 's', sq, 'm', payload)
    end
    redis.call('PUBLISH', CG.KEY.ch_conv(conv), struct.pack('>I8', seq) .. payload)
    if role == 'customer' and preview ~= '' and not c.preview then w.preview = preview end
    if role == 'customer' and mode == 'log' then attrs_store(conv, args) end
    if mode == 'log' and not rating and (role == 'customer' or role == 'agent') then
        kpi_response(conv, role, sender, m, now, c, w)
    end
    if rating then
        kpi_rating(conv, rating)
        w.rating, w.rated_at = rating, now
    end
    conv_hset(conv, w)
    outbound(conv, sq, role, payload, m, c.channel)
    return {conv, seq, 0}
end

-- ---- bounded work streams (router/trim.c) --------------------------------------------------

--[[
FCALL cg_trim 1 <tenant> stream group
  Drops the entries of stream that group is done with: those below its oldest pending entry, or,
  with nothing pending, those before its last delivered entry (XTRIM MINID, exact: the cost is
  the number of entries dropped). Entries not yet delivered or not yet acknowledged are never
  dropped. A stream without that group is left whole (nobody has
  read it yet). Only for streams with one consumer group (cg:in, cg:out:<channel>).
  -> number of entries dropped
]]

local function cg_trim(keys, args)
    local stream, group = args[1], args[2]
    if not group then return redis.error_reply('BADARG stream group expected') end
    if redis.call('TYPE', stream).ok ~= 'stream' then return 0 end
    local last
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
        local f = {}
        for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
        if f['name'] == group then last = f['last-delivered-id'] end
    end
    if not last or last == '0-0' then return 0 end
    local p = redis.call('XPENDING', stream, group)
    local minid = last
    if tonumber(p[1]) > 0 then minid = p[2] end
    return redis.call('XTRIM', stream, 'MINID', minid)
end


redis.register_function{function_name = 'cg_trim', callback = cg_trim}

-- FCALL cg_message (see the top of this file): cg_append with its arguments by name.
local function cg_message(keys, args)
    local ok, a = pcall(cmsgpack.unpack, args[1] or '')
    if not ok or type(a) ~= 'table' then
        return redis.error_reply('BADARG a msgpack map of the message is expected')
    end
    if type(a.payload) ~= 'string' or a.now == nil or type(a.role) ~= 'string' then
        return redis.error_reply('BADARG payload, role and now are required')
    end
    local argv = {a.conv or '', a.cmid or '', a.role, a.sender or '', a.payload, a.newconv or '',
        a.channel or '', fmt(tonumber(a.now) or 0), a.mode or 'log', a.preview or ''}
    if a.attrs ~= nil then
        if type(a.attrs) ~= 'table' then return redis.error_reply('BADARG attrs must be a map') end
        local names = {}
        for k in pairs(a.attrs) do names[#names + 1] = k end
        table.sort(names) -- the same order of writes on every replica and in the AOF
        for _, k in ipairs(names) do
            argv[#argv + 1] = k
            argv[#argv + 1] = tostring(a.attrs[k])
        end
    end
    local r = cg_append(keys, argv, type(a.type) == 'string' and a.type or nil)
    if type(r) ~= 'table' or r.err then return r end
    -- answer('stored', {conv, dup, seq}), written out: this runs for every message
    return {'stored', 'conv', r[1], 'dup', r[3], 'seq', r[2]}
end

redis.register_function{function_name = 'cg_message', callback = cg_message}
-- The positional form as the gateways of the releases before VERSION 45 call it, kept while they
-- may still run beside this library in a rolling upgrade.
redis.register_function{function_name = 'cg_append',
                        callback = function(keys, args) return cg_append(keys, args) end}
