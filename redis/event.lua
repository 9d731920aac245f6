-- redis/event.lua -- the event functions: one call for one event read from cg:in, with its
-- arguments as one msgpack map of named fields, built on the domains before it (a part of the
-- chatgw library: redis/lib.lua).

-- ---- helpers: the map, the answer, the texts in every locale, what the calls write ---------

-- Every event function answers by name: answer(kind, t) (redis/lib.lua).

-- A timer's answer an event passes on (cg_timer_fire's, cg_close_fire's, route_fire's: {'stale'},
-- {'done'}, {'hours', queue}) named; an error as it is.
local function passed(r)
    if r.err then return r end
    return answer(r[1], {queue = r[2]})
end

-- The event's map (args[1]) when it is a map whose fields `names` are non-empty strings and
-- whose `now` is a number; else nil and the BADARG error naming them.
local function event_map(args, what, ...)
    local ok, a = pcall(cmsgpack.unpack, args[1] or '')
    local good = ok and type(a) == 'table' and tonumber(a.now) ~= nil
    for _, k in ipairs({...}) do
        good = good and type(a[k]) == 'string' and a[k] ~= ''
    end
    if not good then return nil, redis.error_reply('BADARG a msgpack map with ' .. what .. ' expected') end
    return a
end

-- The payload of the message `field` for a conversation of `locale` (router/variant.c): the
-- section of the same name, else the first of the same language, else the default ([1]); ''
-- when the message is off or not given.
local function variant(a, field, locale)
    local list, loc = a[field], a.locales
    if type(list) ~= 'table' then return '' end
    local i = 1
    local l = string.lower(locale or '')
    if l ~= '' and type(loc) == 'table' then
        i = loc['=' .. l] or loc['~' .. string.match(l, '^[^%-_]*')] or 1
    end
    local p = list[tonumber(i) or 1]
    if type(p) ~= 'string' then return '' end
    return p
end

-- The payload p (a msgpack msg) with each {name} of its text replaced by vars[name] (unknown
-- names are kept): a decode and encode of the msg, for the few texts whose variables only the
-- call knows (a ticket number).
local function render(p, vars)
    if not vars or p == '' then return p end
    local ok, m = pcall(cmsgpack.unpack, p)
    if not ok or type(m) ~= 'table' or type(m.text) ~= 'string' then return p end
    m.text = string.gsub(m.text, '{([%a_]+)}', function(k) return vars[k] end)
    return cmsgpack.pack(m)
end

-- The payload p (a msgpack msg) with the fields of t set (a decode and encode of the msg), for
-- the few fields only the call knows (the name of the agent a transfer went to).
local function msg_set(p, t)
    local ok, m = pcall(cmsgpack.unpack, p)
    if not ok or type(m) ~= 'table' then return p end
    for k, v in pairs(t) do m[k] = v end
    return cmsgpack.pack(m)
end

-- Append the router's message `field` (variant) to conv under cmid with role, unless it is off;
-- vars: the {name} values of its text only the call knows (render), or nil.
local function say(keys, a, field, conv, locale, cmid, role, channel, now, vars)
    local p = render(variant(a, field, locale), vars)
    if p == '' then return end
    cg_append(keys, {conv, cmid, role, a.sender or 'chatgw', p, '', channel or '', now, 'sys'})
end

-- Publish a.notice (a msgpack msg) for agent on cg:a:<agent>, seq 0.
local function notify_agent(a, agent)
    if type(a.notice) ~= 'string' or a.notice == '' or not agent or agent == '' then return end
    redis.call('PUBLISH', CG.KEY.ch_agent(agent), struct.pack('>I8', 0) .. a.notice)
end

-- Closed conv: the closed event (variant closed_field, cmid cg:close), then cg_after_close (the
-- survey window a.survey_until, the complaint follow-up at a.followup_due) and the survey
-- event (cmid cg:survey) when there is a window: what the customer is told after every close.
local function tell_closed(keys, a, closed_field, conv, channel, locale, now)
    say(keys, a, closed_field, conv, locale, 'cg:close', 'system', channel, now)
    local until_ms = tonumber(a.survey_until) or 0
    cg_after_close(keys, {conv, fmt(until_ms), fmt(tonumber(a.followup_due) or 0)})
    if until_ms > 0 then say(keys, a, 'survey', conv, locale, 'cg:survey', 'system', channel, now) end
end

-- A complaint without a ticket gets one (cg_complaint, with a.day, a.respond_due, a.resolve_due,
-- a.class, a.limit, a.window: router/sla.c sla_complaint_fields) and the customer its number (the
-- texts complaint_ack, cmid cg:ticket), or its latest one when tickets_per_customer is reached.
-- Returns the ticket ('' = none) and 1 when it is new.
local function complaint_open(keys, a, conv, channel, now)
    local c = cg_complaint(keys, {conv, a.day or '', now, fmt(tonumber(a.respond_due) or 0),
        fmt(tonumber(a.resolve_due) or 0), a.class or 'ordinary', fmt(tonumber(a.limit) or 0),
        fmt(tonumber(a.window) or 86400)})
    if c.err then return '', 0 end
    if c[1] ~= '' then
        local locale = redis.call('HGET', CG.KEY.conv(conv), 'locale') or ''
        say(keys, a, 'complaint_ack', conv, locale, 'cg:ticket', 'bot', channel, now, {ticket = c[1]})
    end
    return c[1], c[2]
end

-- Announce assignment a (conv, agent, assign_no, channel, event, notice, offer_due, idle_due:
-- cg_announce's fields) at now: the conversation leaves the outbox; unless stale, the event is
-- logged, the notice published and the timers armed. -> answer 'announced' (seq) | 'stale' 
local function announce(keys, a, now)
    local conv, no = a.conv, fmt(tonumber(a.assign_no))
    redis.call('SREM', CG.KEY.outbox_assign(), conv)
    local h = redis.call('HMGET', CG.KEY.conv(conv), 'state', 'agent', 'assign_no')
    if h[1] ~= 'assigned' or h[2] ~= a.agent or h[3] ~= no then return answer('stale') end
    local seq = 0
    if type(a.event) == 'string' and a.event ~= '' then
        local r = cg_append(keys, {conv, 'cg:asg:' .. no, 'system', 'chatgw', a.event, '',
            a.channel or '', now, 'sys'})
        if type(r) == 'table' and r[2] then seq = r[2] end
    end
    if type(a.notice) == 'string' and a.notice ~= '' then
        redis.call('PUBLISH', CG.KEY.ch_agent(a.agent), struct.pack('>I8', 0) .. a.notice)
    end
    if (tonumber(a.offer_due) or 0) > 0 then cg_offer_arm(keys, {conv, no, a.offer_due}) end
    if (tonumber(a.idle_due) or 0) > 0 then
        redis.call('ZADD', CG.KEY.timers(), fmt(tonumber(a.idle_due)), 'idle:' .. conv)
    end
    return answer('announced', {seq = seq})
end

-- Announce the assignment ROW {conv, agent, agent_name, queue, assign_no, channel} in this call
-- (cg_announce's work), with the map's `assigned` msg (its text may name the agent as {name}),
-- offer_ms (chats) and idle_ms: the agent, its name, the queue and the channel filled in.
-- -> 'announced' | 'stale' | nil (the map brings no `assigned`: the router announces it)
local function announce_row(keys, a, row, now)
    if type(a.assigned) ~= 'string' or a.assigned == '' or type(row) ~= 'table' or not row[2] then
        return nil
    end
    local who = {agent_id = row[2], agent_name = row[3], queue = row[4]}
    if row[6] and row[6] ~= '' then who.channel = row[6] end
    local ev = msg_set(render(a.assigned, {name = row[3]}), who)
    who.conv, who.cmid = row[1], 'cg:asg:' .. fmt(row[5])
    local t = tonumber(now) or 0
    local offer_ms, idle_ms = tonumber(a.offer_ms) or 0, tonumber(a.idle_ms) or 0
    local b = {conv = row[1], agent = row[2], assign_no = row[5], channel = row[6], event = ev,
        notice = msg_set(ev, who), idle_due = idle_ms > 0 and t + idle_ms or 0,
        offer_due = (offer_ms > 0 and row[6] ~= 'email') and t + offer_ms or 0}
    return announce(keys, b, now)[1]
end

-- Announce every assignment this event call made (ASSIGNED, assign.lua), in order, with
-- announce_row. -> the ROWs, and a table conv -> announce_row's answer
local function announce_all(keys, a, now)
    local rows, how = ASSIGNED or {}, {}
    ASSIGNED = {}
    for _, row in ipairs(rows) do how[row[1]] = announce_row(keys, a, row, now) end
    return rows, how
end

-- The callback f of an event function, with ASSIGNED collecting from its start (announce_all).
local function event_fn(f)
    return function(keys, args)
        ASSIGNED = {}
        local r = f(keys, args)
        ASSIGNED = nil
        return r
    end
end

-- The estimated wait (s) at position pos: the conversations before it that no free slot takes,
-- times the handling time (avg_ms, the queue's measured; default_ms when none), spread over the
-- slots of the queue's online agents (at least 1: the agents of an overflow queue).
local function wait_estimate(pos, avg_ms, slots, free, default_ms)
    if avg_ms <= 0 then avg_ms = default_ms end
    local ahead = pos - math.max(free, 0)
    if ahead <= 0 then return 0 end
    if slots < 1 then slots = 1 end
    return math.floor((ahead * avg_ms + slots * 1000 - 1) / (slots * 1000))
end

-- A duration as router/say.c say_duration writes it: whole hours from 2 h on, else minutes
-- rounded up (at least 1), in the locale's units (the map's dur_min / dur_hour).
local function duration_text(a, secs, locale)
    if secs >= 7200 and secs % 3600 == 0 then
        return fmt(secs / 3600) .. ' ' .. variant(a, 'dur_hour', locale)
    end
    return fmt(math.max(1, math.floor((secs + 59) / 60))) .. ' ' .. variant(a, 'dur_min', locale)
end

-- When the conversation waits in `queue` outside its business hours (held: the queue assigns
-- nothing now): the opens_at of the map's `closed` (queue -> the next opening as the router's
-- router/hours.c writes it, for the queues closed now), with the texts off_hours ({opens_at} left
-- for the call); nil when it is not off hours. A map with off_hours and no `closed` brings the
-- texts of the queue its message classified into, rendered, because that queue is closed: true.
local function off_hours_at(a, queue, held)
    if tonumber(held) ~= 1 or type(a.off_hours) ~= 'table' then return nil end
    if type(a.closed) ~= 'table' then return true end
    return a.closed[queue]
end

-- The waiting reply of conv, queued with the figures w (position, avg_ms, held, staffed, slots,
-- free: cg_enqueue's or cg_conv_info's), said with the map's texts (router/conv.c
-- conv_waiting_fields), in the conversation's locale: off hours in the queue it waits in
-- (off_hours_at), the e-mail acknowledgement (cmid cg:ack), nobody online to serve it (no_agent),
-- or the place in line with the estimated wait ({position} {wait} filled in here); cmid
-- wait_cmid. -> true when the map brought the texts (wait_cmid).
local function waiting_reply(keys, a, conv, w, now)
    if type(a.wait_cmid) ~= 'string' then return false end
    local h = redis.call('HMGET', CG.KEY.conv(conv), 'locale', 'channel', 'queue')
    local locale, channel, queue = h[1] or '', h[2] or '', h[3] or ''
    local pos = math.max(tonumber(w.position) or 1, 1)
    local wait = wait_estimate(pos, tonumber(w.avg_ms) or 0, tonumber(w.slots) or 1,
        tonumber(w.free) or 0, tonumber(a.avg_handle_ms) or 0)
    local field, cmid, set, vars = 'queued', a.wait_cmid, {queue = queue}, nil
    local opens = off_hours_at(a, queue, w.held)
    if opens then
        field, set.position, set.wait = 'off_hours', pos, wait
        if opens ~= true then vars = {opens_at = opens} end
    elseif channel == 'email' then
        field, cmid = 'email_ack', 'cg:ack'
    elseif tonumber(w.staffed) == 0 then
        field = 'no_agent'
    else
        set.position, set.wait = pos, wait
    end
    local p = variant(a, field, locale)
    if p == '' then return true end
    if field == 'queued' then vars = {position = fmt(pos), wait = duration_text(a, wait, locale)} end
    cg_append(keys, {conv, cmid, 'bot', a.sender or 'chatgw', msg_set(render(p, vars), set), '',
        channel, now, 'sys'})
    return true
end

-- cg_customer_msg's answer for a new conversation: cg_enqueue's answer r by name (result
-- 'assigned' with row; 'queued' with position, queue_length, avg_ms, held, staffed, slots, free;
-- 'already' with state and row) and how it was told ('announced', 'stale', 'told' or nil).
local function enqueued(r, how)
    local t = {result = r[1], how = how}
    if r[1] == 'assigned' then
        t.row = r[2]
    elseif r[1] == 'queued' then
        t.position, t.queue_length, t.avg_ms, t.held = r[2], r[3], r[4], r[5]
        t.staffed, t.slots, t.free = r[6], r[7], r[8]
    else
        t.state, t.row = r[2], r[3]
    end
    return answer('new', t)
end

-- cg_customer_msg's answer for any other state: cg_conv_info's answer info by name, told 1 when
-- the call armed the response timers itself.
local function conv_state(info, told)
    return answer('info', {state = info[1], channel = info[2], queue = info[3], position = info[4],
        in_outbox = info[5], row = info[6], avg_ms = info[7], locale = info[8], held = info[9],
        staffed = info[10] or 1, slots = info[11] or 1, free = info[12] or 0, told = told})
end

--[[
FCALL cg_customer_msg 1 <tenant> <map>
  A customer's message the routers read from cg:in (not a survey answer), in one call. <map> is a
  msgpack map:
    conv        the conversation (required)
    now         ms (required)
    sender      the router's id, the greeting's sender
    channel     the conversation's channel
    queue, prio, category, locale, pos_ms, sticky_ms
                the router's classification of this message, the customer's locale, the
                position-update period and the sticky-agent window (cg_enqueue's arguments),
                used when the conversation is new
    greet       the greeting: a msgpack msg (role bot), as a msgpack str (the cmsgpack of Redis
                reads no bin types), appended first when new; '' = none
    first_due, next_due
                the response-SLA deadlines (ms, 0 = none) of the queue this message classified
                into: armed when new (cg_sla_customer), or for a conversation in that queue
    dues        optional map queue -> {first_due, next_due}: the same for the other queues
                that count business hours (router/conv.c conv_dues_fields), so that a message
                of a conversation waiting in or served from another queue than it classified
                into gets its own queue's deadlines in this call too (for a queue without
                business hours the call works them out from the desk's timings)
    complaint, day, respond_due, resolve_due, class, limit, window, locales, complaint_ack
                when the queue is the complaint queue (router/sla.c sla_complaint_fields): the
                new conversation gets its ticket and the customer its number (complaint_open)
    assigned, offer_ms, idle_ms
                the `assigned` msg (its text may name the agent as {name}) and the durations of
                the offer (chats) and idle timers: a conversation assigned at once is announced
                in this call too (announce_row; the answer's `how`: 'announced' or 'stale')
    wait_cmid, avg_handle_ms, locales, off_hours, closed, no_agent, queued, dur_min, dur_hour,
    email_ack   the waiting reply (router/conv.c conv_waiting_fields; closed: queue -> opens_at
                of the queues outside their business hours now): a conversation left waiting
                is told in this call (waiting_reply; the answer's `how`: 'told'), and so is a
                waiting chat customer's next message
  -> 'new' result, how and cg_enqueue's answer by name (enqueued): result 'assigned' with row,
       'queued' with position, queue_length, avg_ms, held, staffed, slots, free ('already'
       never: the state was read as new in this call); the conversation was new: greeted (cmid cg:greet), its
       first-response deadline armed, queued, and assigned at once when its queue has a free
       agent
   | 'info' cg_conv_info's answer by name (conv_state): state, channel, queue, position,
       in_outbox, row, avg_ms, locale, held, staffed, slots, free; any other state (or none):
       nothing changed, the router goes on from the state (response timers)
   | 'info' ... queued or assigned, with the waiting texts in the map: while it waits on chat,
       the waiting reply said again in this call for the queue it waits in (off_hours while
       that queue is closed, else the place in line; nothing while nobody serves it: no_agent
       was said once; nothing on e-mail: one acknowledgement); told 1 when the response timers
       (and the idle close) were armed in the call too: with first_due/next_due when the
       message classified into the conversation's queue, else with dues[queue], else (a queue
       without business hours) from the desk's timings; told nil only when neither applies (a
       router of an earlier release sends no dues): the router arms them then
  Errors: BADARG (no map, or conv or now missing), and cg_enqueue's.
]]
-- The response deadlines (first, next; ms, 0 = none) of a conversation in queue on channel for
-- the customer message of event map a at now: the map's own when it classified into that queue,
-- the map's dues[queue] (a queue counting business hours: the router worked them out), else,
-- for a queue without business hours, now + the desk's first_s / next_s of the channel; nil when
-- none of these is known (the router arms them).
local function customer_dues(a, queue, channel, now)
    if a.queue == queue then return tonumber(a.first_due) or 0, tonumber(a.next_due) or 0 end
    local q = type(a.dues) == 'table' and a.dues[queue]
    if type(q) == 'table' then return tonumber(q[1]) or 0, tonumber(q[2]) or 0 end
    local d = desk_timings()
    if d.ready ~= '1' or d['hours:' .. (queue or '')] then return nil end
    local ch = channel or ''
    local f, n = tonumber(d['first_s:' .. ch]) or 0, tonumber(d['next_s:' .. ch]) or 0
    return f > 0 and now + f * 1000 or 0, n > 0 and now + n * 1000 or 0
end

local function cg_customer_msg(keys, args)
    local ok, a = pcall(cmsgpack.unpack, args[1] or '')
    if not ok or type(a) ~= 'table' or type(a.conv) ~= 'string' or a.conv == '' or
        not tonumber(a.now) then
        return redis.error_reply('BADARG a msgpack map with conv and now expected')
    end
    local conv, now = a.conv, fmt(tonumber(a.now))
    local st = redis.call('HGET', CG.KEY.conv(conv), 'state')
    if st ~= 'new' then
        local info = cg_conv_info(keys, {conv})
        if type(a.wait_cmid) ~= 'string' or (st ~= 'queued' and st ~= 'assigned') then
            return conv_state(info)
        end
        -- another message while it waits or is served (not the steady state): its response
        -- timers and the idle close, when the map's deadlines are the conversation's (they
        -- count the business hours of the queue this message classified into: for another,
        -- the router works them out: not told)
        local told
        local first, nxt = customer_dues(a, info[3], info[2], tonumber(now) or 0)
        if first then
            sla_customer(conv, first, nxt)
            local idle_ms = tonumber(a.idle_ms) or 0
            if st == 'assigned' and idle_ms > 0 then
                redis.call('ZADD', CG.KEY.timers(), fmt((tonumber(now) or 0) + idle_ms),
                    'idle:' .. conv)
            end
            told = 1
        end
        -- while it waits on chat, the waiting reply again, for the queue it waits in: off_hours
        -- while that queue is closed, else the place in line (not on e-mail: one
        -- acknowledgement; not while nobody serves the queue: no_agent was said once)
        -- {state, channel, queue, position, in_outbox, ROW, avg_ms, locale, held, staffed, slots,
        -- free}
        if st == 'queued' and info[2] ~= 'email' and
            (info[10] == 1 or off_hours_at(a, info[3], info[9])) then
            waiting_reply(keys, a, conv, {position = info[4], avg_ms = info[7], held = info[9],
                staffed = info[10], slots = info[11], free = info[12]}, now)
        end
        return conv_state(info, told)
    end
    if type(a.greet) == 'string' and a.greet ~= '' then
        cg_append(keys, {conv, 'cg:greet', 'bot', a.sender or 'chatgw', a.greet, '', a.channel or '',
            now, 'sys'})
    end
    sla_customer(conv, tonumber(a.first_due) or 0, tonumber(a.next_due) or 0)
    local r = cg_enqueue(keys, {conv, a.queue or '', tostring(tonumber(a.prio) or 0), now,
        a.category or '', a.locale or '', fmt(tonumber(a.pos_ms) or 0),
        fmt(tonumber(a.sticky_ms) or 0)})
    if r.err then return r end
    if tonumber(a.complaint) == 1 then complaint_open(keys, a, conv, a.channel or '', now) end
    -- assigned at once: announced in this call too, when the map brings the assigned msg
    local _, how = announce_all(keys, a, now)
    if r[1] == 'assigned' and how[conv] then return enqueued(r, how[conv]) end
    if r[1] == 'queued' and waiting_reply(keys, a, conv, {position = r[2], avg_ms = r[4],
        held = r[5], staffed = r[6], slots = r[7], free = r[8]}, now) then
        return enqueued(r, 'told')
    end
    return enqueued(r)
end

--[[
FCALL cg_announce 1 <tenant> <map>
  The router announces an assignment a function returned (a ROW), in one call. <map>:
    conv, agent, assign_no    the ROW's (required)
    now                       ms (required)
    channel                   the conversation's
    event                     the `assigned` msg (a msgpack str) appended to the log (cmid
                              cg:asg:<assign_no>, role system)
    notice                    the same msg with conv and cmid, published on cg:a:<agent> (seq 0)
    offer_due                 ms, 0 = none: offer:<conv> armed once for this assignment
                              (cg_offer_arm's rule)
    idle_due                  ms, 0 = none: idle:<conv> armed
  The conversation leaves the assignment outbox (cg_outbox_done). An assignment already taken
  back or moved (assign_no is not the conversation's, or another agent has it) announces nothing
  and arms nothing: 'stale'.  -> 'announced' seq (the event's log seq)
  Errors: BADARG.
]]
local function cg_announce(keys, args)
    local ok, a = pcall(cmsgpack.unpack, args[1] or '')
    if not ok or type(a) ~= 'table' or type(a.conv) ~= 'string' or type(a.agent) ~= 'string' or
        not tonumber(a.assign_no) or not tonumber(a.now) then
        return redis.error_reply('BADARG a msgpack map with conv, agent, assign_no and now expected')
    end
    return announce(keys, a, fmt(tonumber(a.now)))
end

--[[
The texts of the three calls below come in every configured locale (router/variant.c): the map
has `locales` and, per message, an array of payloads; the call picks by the conversation's
locale. Every message has a fixed cmid, so nothing is written twice.

FCALL cg_agent_close 1 <tenant> <map>
  An agent's close command. <map>: conv, agent, now (required); resolution ('' = resolved);
  entry (the cg:in entry id); unresolved (1: the code is one of unresolved_resolutions);
  survey_until, followup_due (ms, 0 = none: cg_after_close's); texts closed, survey, requeued.
  Unresolved: cg_reopen, and the customer gets `requeued` (cmid cg:rq:<entry>)
    -> 'requeued' channel, queue, rows ({ROW, ...})
  Else: cg_close, then the closed event, the survey window and follow-up, the survey
    -> 'closed' channel, queue, rows | 'already' channel, queue, rows {} (this agent had closed
       it: nothing written again)
  Errors: BADARG, and cg_close's / cg_reopen's (NOTASSIGNED, CLOSED).
FCALL cg_customer_end 1 <tenant> <map>
  The customer's End chat. <map>: conv, customer, now (required); survey_until; notice (the
  agent's notice, a msgpack msg); texts closed_abandoned, closed_left, survey.
  Waiting: it leaves its queue, closed abandoned   -> 'abandoned' queue
  Assigned: closed customer_left as by its agent (survey, notice to the agent)
    -> 'ended' queue, agent, rows ({ROW, ...})
  Closed before (also a re-processed entry: everything was done in that call) -> 'already' 
  Errors: BADARG, NOTYOURS.
FCALL cg_close_timer 1 <tenant> <map>
  A claimed idle:<conv> or followup:<conv> timer. <map>: member, lease, now (required); newconv,
  followup_queue (cg_close_fire's); for idle: survey_until, notice, texts idle_closed (cmid
  cg:idle), closed, survey; for followup: followup_event (a `followup` msg, no text) and the
  texts followup ({ticket} filled in here).
  -> 'idle' conv, agent, queue, rows ({ROW, ...}) (closed no_response, both sides told), or
     'followup' newconv, queue, ticket, rows: the task queued, made the customer's current
     conversation (unless it has moved on) and opened with the text followup (cmid cg:fu); the
     closed conversation gets the followup event (cmid cg:fu:<newconv>), or cg_close_fire's
     other answers ('done', 'stale').
  Errors: BADARG.
]]
local function cg_agent_close(keys, args)
    local a, err = event_map(args, 'conv, agent and now', 'conv', 'agent')
    if not a then return err end
    local conv, now = a.conv, fmt(tonumber(a.now))
    if tonumber(a.unresolved) == 1 then
        local r = cg_reopen(keys, {conv, a.agent, now})
        if r.err then return r end
        say(keys, a, 'requeued', conv, r[3], 'cg:rq:' .. (a.entry or ''), 'bot', r[2], now)
        local rows = announce_all(keys, a, now)
        return answer('requeued', {channel = r[2], queue = r[4], rows = rows})
    end
    local queue = redis.call('HGET', CG.KEY.conv(conv), 'queue') or ''
    local r = cg_close(keys, {conv, a.agent, a.resolution or '', now})
    if r.err then return r end
    if r[1] == 'already' then
        return answer('already', {channel = r[2], queue = queue, rows = {}})
    end
    tell_closed(keys, a, 'closed', conv, r[2], r[4], now)
    local rows = announce_all(keys, a, now)
    return answer('closed', {channel = r[2], queue = queue, rows = rows})
end

local function cg_customer_end(keys, args)
    local a, err = event_map(args, 'conv, customer and now', 'conv', 'customer')
    if not a then return err end
    local conv, now = a.conv, fmt(tonumber(a.now))
    local before = redis.call('HGET', CG.KEY.conv(conv), 'state')
    local r = cg_customer_close(keys, {conv, a.customer, now})
    if r.err then return r end
    if before == 'closed' or r[1] == 'already' then return answer('already') end
    local channel, locale, queue = r[2], r[3], r[4]
    if r[1] == 'abandoned' then
        say(keys, a, 'closed_abandoned', conv, locale, 'cg:close', 'system', channel, now)
        return answer('abandoned', {queue = queue})
    end
    tell_closed(keys, a, 'closed_left', conv, channel, locale, now)
    notify_agent(a, r[5])
    local rows = announce_all(keys, a, now)
    return answer('ended', {queue = queue, agent = r[5], rows = rows})
end

-- A complaint's follow-up task newconv (of closed conv) was queued: it becomes the customer's
-- current conversation (unless the customer has moved on to another), opened by the text
-- `followup` ({ticket}); the closed conversation gets a `followup` event (a.followup_event, no
-- text, so bridges send nothing twice) that moves the customer's live web sessions there.
local function followup_tell(keys, a, conv, newconv, ticket, now)
    local c = redis.call('HMGET', CG.KEY.conv(newconv), 'customer', 'channel', 'locale')
    if not c[1] then return end
    local cur = redis.call('HGET', CG.KEY.cust(c[1]), 'conv')
    if cur == conv or cur == false then redis.call('HSET', CG.KEY.cust(c[1]), 'conv', newconv) end
    say(keys, a, 'followup', newconv, c[3], 'cg:fu', 'bot', c[2], now, {ticket = ticket})
    if type(a.followup_event) == 'string' and a.followup_event ~= '' then
        cg_append(keys, {conv, 'cg:fu:' .. newconv, 'system', a.sender or 'chatgw', a.followup_event,
            '', c[2] or '', now, 'sys'})
    end
end

local function cg_close_timer(keys, args)
    local a, err = event_map(args, 'member, lease and now', 'member', 'lease')
    if not a then return err end
    local now = fmt(tonumber(a.now))
    local r = cg_close_fire(keys, {a.member, a.lease, now, a.newconv or '', a.followup_queue or ''})
    if r[1] == 'followup' then
        followup_tell(keys, a, string.match(a.member, '^%a+:(.+)$'), r[2], r[4], now)
        local rows = announce_all(keys, a, now)
        return answer('followup', {newconv = r[2], queue = r[3], ticket = r[4], rows = rows})
    end
    if r.err or r[1] ~= 'idle' then return passed(r) end
    local conv, agent, channel, locale = r[2], r[3], r[4], r[5]
    say(keys, a, 'idle_closed', conv, locale, 'cg:idle', 'bot', channel, now)
    tell_closed(keys, a, 'closed', conv, channel, locale, now)
    notify_agent(a, agent)
    local rows = announce_all(keys, a, now)
    return answer('idle', {conv = conv, agent = agent, rows = rows,
        queue = redis.call('HGET', CG.KEY.conv(conv), 'queue') or ''})
end

--[[
FCALL cg_agent_transfer 1 <tenant> <map>
  An agent's transfer command, in one call. <map>: conv, agent, now (required); to_agent or
  to_queue; pos_ms (cg_transfer's); entry (the cg:in entry id); transferred (the `transferred`
  msg: agent_id or queue, the note as text; the target agent's name is set here).
  cg_transfer moves it, then the transferred event is appended (cmid cg:tr:<entry>, role system)
  -> 'transferred' channel, locale, queue, row (the ROW of to_agent, or {}), rows ({ROW, ...}
     the call assigned: the freed slot's)
  Errors: BADARG, and cg_transfer's (NOTASSIGNED, CLOSED, TRANSFERFAIL).
]]
local function cg_agent_transfer(keys, args)
    local a, err = event_map(args, 'conv, agent and now', 'conv', 'agent')
    if not a then return err end
    local conv, now = a.conv, fmt(tonumber(a.now))
    local r = cg_transfer(keys, {conv, a.agent, now, a.to_agent or '', a.to_queue or '',
        fmt(tonumber(a.pos_ms) or 0)})
    if r.err then return r end
    local p = a.transferred
    if type(p) == 'string' and p ~= '' then
        local row = r[5]
        if (a.to_agent or '') ~= '' then p = msg_set(p, {agent_name = row[3] or a.to_agent}) end
        cg_append(keys, {conv, 'cg:tr:' .. (a.entry or ''), 'system', a.sender or 'chatgw', p, '',
            r[2], now, 'sys'})
    end
    local rows = announce_all(keys, a, now)
    return answer('transferred', {channel = r[2], locale = r[3], queue = r[4], row = r[5],
        rows = rows})
end

--[[
FCALL cg_agent_classify 1 <tenant> <map>
  An agent's classify command, in one call. <map>: conv, agent, category, now (required); entry
  (the cg:in entry id); classified (the desk-only `classified` msg, its text naming the old
  category as {from}); when the category's rule leads to the complaint queue: complaint 1, day
  (yyyymmdd), respond_due, resolve_due (ms), class, limit, window (cg_complaint's), locales and
  the texts complaint_ack ({ticket}).
  cg_reclassify, the classified event (cmid cg:cl:<entry>, role system); a complaint without a
  ticket gets one (cg_complaint) and the customer its number (cmid cg:ticket), or the latest one
  when tickets_per_customer is reached.
  -> 'classified' old (the category before), ticket ('' = none), new_ticket (1: it is new)
  Errors: BADARG, and cg_reclassify's (NOTASSIGNED, CLOSED, CLASSIFYFAIL).
]]
local function cg_agent_classify(keys, args)
    local a, err = event_map(args, 'conv, agent, category and now', 'conv', 'agent', 'category')
    if not a then return err end
    local conv, now = a.conv, fmt(tonumber(a.now))
    local r = cg_reclassify(keys, {conv, a.agent, a.category, now})
    if r.err then return r end
    local old, channel, ticket = r[1], r[2], r[4]
    if type(a.classified) == 'string' and a.classified ~= '' then
        cg_append(keys, {conv, 'cg:cl:' .. (a.entry or ''), 'system', a.sender or 'chatgw',
            render(a.classified, {from = old ~= '' and old or '(none)'}), '', channel, now, 'sys'})
    end
    local new = 0
    if tonumber(a.complaint) == 1 and ticket == '' then
        ticket, new = complaint_open(keys, a, conv, channel, now)
    end
    return answer('classified', {old = old, ticket = ticket, new_ticket = new})
end

--[[
FCALL cg_pos_timer 1 <tenant> <map>
  A claimed pos:<conv> timer, in one call. <map>: member, lease, now (required); update_ms,
  max_ms (cg_timer_fire's); avg_handle_ms, locales, the texts position_update ({position} {wait}
  filled in here) and no_agent, dur_min, dur_hour (router/sla.c sla_pos_fields).
  cg_timer_fire decides; the customer is told in the same call: the place in line and the
  estimated wait (position, wait, queue set; cmid cg:pu:<n>), or once that nobody who serves the
  queue is online.
  -> 'told' conv, queue | cg_timer_fire's other answers ('done', 'stale')
  Errors: BADARG.
]]
local function cg_pos_timer(keys, args)
    local a, err = event_map(args, 'member, lease and now', 'member', 'lease')
    if not a then return err end
    local now = fmt(tonumber(a.now))
    local r = cg_timer_fire(keys, {a.member, a.lease, now, fmt(tonumber(a.update_ms) or 15000),
        fmt(tonumber(a.max_ms) or 60000)})
    if r.err or (r[1] ~= 'pos' and r[1] ~= 'noagent') then return passed(r) end
    local conv = r[2]
    if r[1] == 'noagent' then -- {'noagent', conv, channel, queue, locale, n}
        local p = variant(a, 'no_agent', r[5])
        if p ~= '' then
            cg_append(keys, {conv, 'cg:pu:' .. fmt(r[6]), 'bot', a.sender or 'chatgw',
                msg_set(p, {queue = r[4]}), '', r[3], now, 'sys'})
        end
        return answer('told', {conv = conv, queue = r[4]})
    end
    -- {'pos', conv, position, channel, queue, avg_ms, locale, n, slots, free}
    local pos = tonumber(r[3]) or 1
    local wait = wait_estimate(pos, tonumber(r[6]) or 0, tonumber(r[9]) or 1, tonumber(r[10]) or 0,
        tonumber(a.avg_handle_ms) or 0)
    local p = variant(a, 'position_update', r[7])
    if p ~= '' then
        p = render(p, {position = fmt(pos), wait = duration_text(a, wait, r[7])})
        cg_append(keys, {conv, 'cg:pu:' .. fmt(r[8]), 'bot', a.sender or 'chatgw',
            msg_set(p, {queue = r[5], position = pos, wait = wait}), '', r[4], now, 'sys'})
    end
    return answer('told', {conv = conv, queue = r[5]})
end

--[[
FCALL cg_sla_timer 1 <tenant> <map>
  A claimed SLA timer (first:, next:, complaint_respond:, complaint_resolve:) or hours:<queue>,
  in one call. <map>: member, lease, now (required); action, escalate_queue (cg_timer_fire's);
  escalated (an `escalated` msg shell) and notice (a system text shell) the call fills in.
  A breach is recorded and acted on (cg_timer_fire), the desk-only escalated event written (code =
  the timer kind, queue = where it is now, the text saying what happened; cmid
  cg:br:<kind>:<lease>), and the escalation queue's online agents, and the agent a reassigned
  conversation was taken from, get a notice on their channel.
  -> 'breach' kind, conv, result, from (the queue before), queue (now), rows ({ROW, ...} the
     action assigned) | cg_timer_fire's other answers ('hours' queue, 'done', 'stale')
  Errors: BADARG.
]]
local function cg_sla_timer(keys, args)
    local a, err = event_map(args, 'member, lease and now', 'member', 'lease')
    if not a then return err end
    local now = fmt(tonumber(a.now))
    local action, to = a.action or 'escalate', a.escalate_queue or 'supervisors'
    local r = cg_timer_fire(keys, {a.member, a.lease, now, '0', '0', action, to})
    if r.err or r[1] ~= 'breach' then return passed(r) end
    local rows = announce_all(keys, a, now)
    -- {'breach', kind, conv, result, channel, queue, locale, {agents}, ticket, from, prev agent}
    local kind, conv, result, channel, q, sups, ticket, from, prev =
        r[2], r[3], r[4], r[5], r[6], r[8], r[9], r[10], r[11]
    local esc = result == 'escalated'
    if type(a.escalated) == 'string' and a.escalated ~= '' then
        local note = string.format('SLA breach: %s overdue, %s%s (queue %s%s)', kind, result,
            esc and (' to ' .. to) or '', from, from ~= q and (' -> ' .. q) or '')
        cg_append(keys, {conv, 'cg:br:' .. kind .. ':' .. a.lease, 'system', a.sender or 'chatgw',
            msg_set(a.escalated, {code = kind, queue = q, text = note}), '', channel, now, 'sys'})
    end
    if type(a.notice) == 'string' and a.notice ~= '' then
        local text = string.format('SLA breach: %s overdue in conversation %s%s (queue %s): %s%s',
            kind, conv, ticket ~= '' and (', complaint ' .. ticket) or '', from, result,
            esc and (' to ' .. to) or '')
        local n = struct.pack('>I8', 0) .. msg_set(a.notice, {conv = conv, queue = q, text = text})
        for _, agent in ipairs(sups) do redis.call('PUBLISH', CG.KEY.ch_agent(agent), n) end
        if prev and prev ~= '' then redis.call('PUBLISH', CG.KEY.ch_agent(prev), n) end
    end
    return answer('breach', {kind = kind, conv = conv, result = result, from = from, queue = q,
        rows = rows})
end

--[[
FCALL cg_agent_msg 1 <tenant> <map>
  An agent's text the routers read (a queue with business hours: not the steady state), in one
  call. <map>: conv, agent, now (required); idle_due (ms, 0 = none).
  The response timers (sla_agent's work: the first reply, the answered wait) and, while
  the conversation is assigned, the idle close re-armed. -> 'ok' (no fields)
  Errors: BADARG.
]]
local function cg_agent_msg(keys, args)
    local a, err = event_map(args, 'conv, agent and now', 'conv', 'agent')
    if not a then return err end
    local now = fmt(tonumber(a.now))
    sla_agent(a.conv, now, a.agent)
    if (tonumber(a.idle_due) or 0) > 0 and
        redis.call('HGET', CG.KEY.conv(a.conv), 'state') == 'assigned' then
        redis.call('ZADD', CG.KEY.timers(), fmt(tonumber(a.idle_due)), 'idle:' .. a.conv)
    end
    return answer('ok')
end

--[[
FCALL cg_customer_rating 1 <tenant> <map>
  A customer's answer to the survey (cg_append took it: the cg:in entry's r), in one call.
  <map>: conv, now (required); entry (the cg:in entry id); rating_event (a `rating` msg: for an
  answer given as a one-digit text; '' for a rating frame, which is one already); locales and the
  texts rating_thanks ({rating} filled in by the router).
  The rating event (cmid cg:rate:<entry>) and the thanks (cmid cg:thx:<entry>) in the
  conversation's locale. -> 'ok' (no fields)
  Errors: BADARG.
]]
local function cg_customer_rating(keys, args)
    local a, err = event_map(args, 'conv and now', 'conv')
    if not a then return err end
    local now = fmt(tonumber(a.now))
    local h = redis.call('HMGET', CG.KEY.conv(a.conv), 'channel', 'locale')
    local entry = a.entry or ''
    if type(a.rating_event) == 'string' and a.rating_event ~= '' then
        cg_append(keys, {a.conv, 'cg:rate:' .. entry, 'system', a.sender or 'chatgw', a.rating_event,
            '', h[1] or '', now, 'sys'})
    end
    say(keys, a, 'rating_thanks', a.conv, h[2] or '', 'cg:thx:' .. entry, 'bot', h[1] or '', now)
    return answer('ok')
end

--[[
FCALL cg_agent_presence 1 <tenant> <map>
  An agent's connect (connect, connect_online, connect_away), disconnect or status (online,
  away), in one call. <map>: agent, code, now (required); sock, name, cap, skills (a comma
  list), ts (the event's time); assigned, offer_ms, idle_ms (announce_row's).
  cg_presence (connect / disconnect) or cg_status, and the conversations the agent is offered
  are announced in the same call.  -> 'presence' rows ({ROW, ...}, announced)
  Errors: BADARG, and cg_status's.
FCALL cg_agent_pick 1 <tenant> <map>
  An agent picks a waiting conversation, in one call. <map>: conv, agent, now (required); the
  announce_row fields.  -> 'assigned' queue, row (the ROW, announced)
  Errors: BADARG, and cg_pick's (PICKFAIL).
]]
local PRESENCE_UP = {connect = '', connect_online = 'online', connect_away = 'away'}

local function cg_agent_presence(keys, args)
    local a, err = event_map(args, 'agent, code and now', 'agent', 'code')
    if not a then return err end
    local now, ts = fmt(tonumber(a.now)), fmt(tonumber(a.ts) or tonumber(a.now))
    local rows
    local chosen = PRESENCE_UP[a.code]
    if chosen or a.code == 'disconnect' then
        local up = chosen and '1' or '0'
        rows = cg_presence(keys, {a.agent, a.sock or '', up, a.name or '',
            chosen and fmt(tonumber(a.cap) or 1) or '', chosen and (a.skills or '') or '', now, ts,
            chosen or ''})
    else
        rows = cg_status(keys, {a.agent, a.code, now, ts})
    end
    if rows.err then return rows end
    return answer('presence', {rows = (announce_all(keys, a, now))})
end

local function cg_agent_pick(keys, args)
    local a, err = event_map(args, 'conv, agent and now', 'conv', 'agent')
    if not a then return err end
    local now = fmt(tonumber(a.now))
    local r = cg_pick(keys, {a.conv, a.agent, now})
    if r.err then return r end
    announce_all(keys, a, now)
    return answer('assigned', {queue = r[2], row = r[3]})
end

--[[
FCALL cg_route_timer 1 <tenant> <map>
  A claimed offer:<conv> or overflow:<queue> timer (router/routing.c), in one call, under the
  lease rule of cg_timer_fire. <map>: member, lease, now (required); max_misses (0 = never
  away); missed (a system text msg for the agent who did not answer, {conv} filled in here),
  away (the same for an agent set away, {misses}), away_status (a presence msg, code away, the
  agent set here); the announce_row fields (assigned, offer_ms, idle_ms).
  offer: taken back and offered to the next available agent (route_fire, timer.lua); the agent is
    told (missed) and, at max_misses, set away and told so (away, away_status), everything the
    call assigned is announced -> 'missed' conv, agent, misses, away (0|1), queue, rows
    ({ROW, ...})
  overflow: the overdue conversations to the overflow queues' agents, announced
    -> 'overflow' queue, to ({overflow queue, ...}), rows
  otherwise 'done', or 'stale'.
  Errors: BADARG.
FCALL cg_outbox_announce 1 <tenant> <map>
  Announce up to `limit` assignments nobody announced yet (cg:outbox:assign: a router died
  between a call and its announcement, or a call without the announce_row fields: a queue's
  configuration, a dead gateway's agents reaped), in one call. <map>: now (required); limit
  (default 100); the announce_row fields.  -> 'outbox' rows ({ROW, ...}: announced, or stale
  and dropped)
  Errors: BADARG.
]]
local function cg_route_timer(keys, args)
    local a, err = event_map(args, 'member, lease and now', 'member', 'lease')
    if not a then return err end
    local now = tonumber(a.now)
    local r = route_fire(a.member, a.lease, now, tonumber(a.max_misses) or 0)
    if r[1] == 'overflow' then
        local rows = announce_all(keys, a, fmt(now))
        return answer('overflow', {queue = r[2], to = r[4], rows = rows})
    end
    if r[1] ~= 'missed' then return passed(r) end
    -- {'missed', conv, agent, misses, away, channel, queue, locale, assigned}
    local conv, agent, misses, away = r[2], r[3], r[4], r[5]
    local tell = {}
    if type(a.missed) == 'string' and a.missed ~= '' then
        tell[#tell + 1] = msg_set(render(a.missed, {conv = conv}), {conv = conv, queue = r[7]})
    end
    if away == 1 and type(a.away) == 'string' and a.away ~= '' then
        tell[#tell + 1] = render(a.away, {misses = fmt(misses)})
    end
    if away == 1 and type(a.away_status) == 'string' and a.away_status ~= '' then
        tell[#tell + 1] = msg_set(a.away_status, {agent_id = agent})
    end
    for _, p in ipairs(tell) do
        redis.call('PUBLISH', CG.KEY.ch_agent(agent), struct.pack('>I8', 0) .. p)
    end
    return answer('missed', {conv = conv, agent = agent, misses = misses, away = away,
        queue = r[7], rows = (announce_all(keys, a, fmt(now)))})
end

local function cg_outbox_announce(keys, args)
    local a, err = event_map(args, 'now')
    if not a then return err end
    local now = fmt(tonumber(a.now))
    local rows = {}
    local limit = math.max(1, math.min(tonumber(a.limit) or 100, 1000))
    for _, conv in ipairs(redis.call('SRANDMEMBER', CG.KEY.outbox_assign(), limit)) do
        local row = current_row(conv)
        if #row == 0 then
            redis.call('SREM', CG.KEY.outbox_assign(), conv)
        else
            rows[#rows + 1] = row
            announce_row(keys, a, row, now)
        end
    end
    return answer('outbox', {rows = rows})
end

redis.register_function{function_name = 'cg_customer_msg', callback = event_fn(cg_customer_msg)}
redis.register_function{function_name = 'cg_announce', callback = cg_announce}
redis.register_function{function_name = 'cg_agent_close', callback = event_fn(cg_agent_close)}
redis.register_function{function_name = 'cg_customer_end', callback = event_fn(cg_customer_end)}
redis.register_function{function_name = 'cg_close_timer', callback = event_fn(cg_close_timer)}
redis.register_function{function_name = 'cg_agent_transfer', callback = event_fn(cg_agent_transfer)}
redis.register_function{function_name = 'cg_agent_classify', callback = event_fn(cg_agent_classify)}
redis.register_function{function_name = 'cg_pos_timer', callback = event_fn(cg_pos_timer)}
redis.register_function{function_name = 'cg_sla_timer', callback = event_fn(cg_sla_timer)}
redis.register_function{function_name = 'cg_agent_msg', callback = event_fn(cg_agent_msg)}
redis.register_function{function_name = 'cg_customer_rating', callback = event_fn(cg_customer_rating)}
redis.register_function{function_name = 'cg_agent_presence', callback = event_fn(cg_agent_presence)}
redis.register_function{function_name = 'cg_agent_pick', callback = event_fn(cg_agent_pick)}
redis.register_function{function_name = 'cg_route_timer', callback = event_fn(cg_route_timer)}
redis.register_function{function_name = 'cg_outbox_announce', callback = event_fn(cg_outbox_announce)}
