-- redis/desk.lua -- helpers every domain of the chatgw library uses (a part of the library, right
-- after its header: redis/lib.lua).

-- A number as Redis wants it in an argument: no exponent, no fraction.
-- (an integer as %d: much cheaper than %.0f, which formats in multiple precision; the same
-- digits for every integer below 2^53)
local function fmt(n)
    if n == math.floor(n) and n > -1e15 and n < 1e15 then return string.format('%d', n) end
    return string.format('%.0f', n)
end

-- ---- sequence numbers never reused, also after Redis lost writes ------------------------------
-- A conversation's messages are numbered by HINCRBY of its field seq. A Redis that dies loses
-- what it had not written to disk (appendfsync everysec: up to its last second; no AOF: all since
-- the last snapshot), and with it the last numbers it handed out, which clients already have.
-- So a conversation remembers (field ep) the run of this library that numbered its last message:
-- run_name(), the time of the first call in this Lua state, which Redis creates anew on every
-- start (and on every load of the library). The first number a run hands out in a conversation
-- that another run numbered skips SEQ_SKIP numbers: more than a conversation can be given in the
-- writes a crash loses. Nothing is lost by a skip: the log simply has no entries there
-- (docs/architecture.md, "Sequence numbers").
local SEQ_SKIP = 1000000
local run_name_memo
local function run_name()
    if not run_name_memo then
        local t = redis.call('TIME')
        run_name_memo = t[1] .. '.' .. t[2]
    end
    return run_name_memo
end

-- ---- desk metrics: counted when things happen, read by the gateway's GET /metrics -------------
-- cg:kpi:queue:<queue> and cg:kpi:agent:<agent> are hashes of counters (HINCRBY only); the fields
-- are the schema's kpis (CG.KPI). cg:kpi:agents is the set of agents that have counters.
-- Definitions: docs/architecture.md, "Desk metrics". Not cg:stats:<queue> (a rolling average
-- for wait estimates).

-- Add the field/increment pairs kv to the counters of hash key: one HINCRBY for one field, else
-- one HMGET and one HSET of the sums (the AOF gets one command instead of one per field).
local function kpi_bump(key, kv)
    if #kv == 2 then
        redis.call('HINCRBY', key, kv[1], kv[2])
        return
    end
    local fields, set = {}, {}
    for i = 1, #kv, 2 do fields[#fields + 1] = kv[i] end
    local cur = redis.call('HMGET', key, unpack(fields))
    for i = 1, #kv, 2 do
        set[#set + 1] = kv[i]
        set[#set + 1] = fmt((tonumber(cur[(i + 1) / 2]) or 0) + (tonumber(kv[i + 1]) or 0))
    end
    redis.call('HSET', key, unpack(set))
end

-- Add the field/increment pairs kv to the queue's counters (none when queue is '' or nil) and to
-- the agent's (none when agent is '' or nil), whom cg:kpi:agents then lists (known: the caller
-- knows it does already: no SADD).
local function kpi_add(queue, agent, kv, known)
    if queue and queue ~= '' then kpi_bump(CG.KEY.kpi_queue(queue), kv) end
    if agent and agent ~= '' then
        kpi_bump(CG.KEY.kpi_agent(agent), kv)
        if not known then redis.call('SADD', CG.KEY.kpi_agents(), agent) end
    end
end

-- ---- response times held in the conversation (issue 10: AOF bytes per answer) -------------
-- The waits an agent answers add up in the conversation's field rt, "<queue>\t<agent>\t<ms>\t<n>",
-- written with the message's other fields in cg_append's one HSET (about 35 bytes of AOF),
-- instead of two counter HSETs (about 200) per answer. They go to response_ms/_n of
-- cg:kpi:queue:<queue> and cg:kpi:agent:<agent> when an answer comes from another queue or agent
-- than the held ones (transfer, reclassification, reassignment) and when the conversation closes
-- (kpi_pending_flush). cg:kpi:pending lists the conversations that hold some, and
-- cg_kpi_pending adds them up for /metrics, which so stays live. Nothing is lost in a crash: rt
-- is in the conversation, written with the answer.

-- rt's parts (queue, agent, ms, n), or nil when v is empty or not rt's shape.
local function rt_parse(v)
    if not v or v == '' then return nil end
    local q, a, ms, n = string.match(v, '^([^\t]*)\t([^\t]*)\t(%d+)\t(%d+)$')
    if not q then return nil end
    return q, a, tonumber(ms), tonumber(n)
end

-- Add held response times to the counters of queue q and agent a.
local function rt_flush(q, a, ms, n)
    kpi_add(q, a, {CG.KPI.response_ms, fmt(ms), CG.KPI.response_n, fmt(n)})
end

-- An answer of agent in conv (c: conv_fields, with rt) took ms in queue: the new value of rt,
-- for the caller's HSET. Held times of another queue or agent are added to their counters first;
-- a conversation that held none is listed in cg:kpi:pending.
local function rt_add(conv, c, queue, agent, ms)
    local q, a, sum, n = rt_parse(c.rt)
    if q and (q ~= queue or a ~= agent) then
        rt_flush(q, a, sum, n)
        q = nil
    end
    if not q then
        sum, n = 0, 0
        redis.call('SADD', CG.KEY.kpi_pending(), conv)
    end
    return queue .. '\t' .. agent .. '\t' .. fmt(sum + ms) .. '\t' .. fmt(n + 1)
end

-- conv closes: its held response times go to the counters, and it leaves cg:kpi:pending.
local function kpi_pending_flush(conv)
    local v = redis.call('HGET', CG.KEY.conv(conv), 'rt')
    local q, a, ms, n = rt_parse(v)
    if q then rt_flush(q, a, ms, n) end
    if v then redis.call('HDEL', CG.KEY.conv(conv), 'rt') end
    redis.call('SREM', CG.KEY.kpi_pending(), conv)
end

-- ms from since (queued_at, else created) to now, never negative.
local function kpi_ms(since, now)
    local d = (tonumber(now) or 0) - (tonumber(since) or tonumber(now) or 0)
    return d > 0 and fmt(d) or 0
end

-- ---- response SLAs: cg_sla_customer (redis/timer.lua), sla_agent (cg_message) and what
-- cg_append does itself for the messages of an assigned conversation (redis/conv.lua, steady)
--[[
FCALL cg_sla_customer 1 <tenant> conv first_due next_due
  A customer message: until an agent first replied, arm first:<conv> at first_due (if not armed);
  after that, while assigned, arm next:<conv> at next_due (if not armed). 0 = do not arm.  -> 1
sla_agent(conv, now_ms [, agent])   inside the library (cg_message, cg_agent_msg)
  An agent replied: first_reply_at (once); cancels first:, next: and
  complaint_respond: of conv. The first reply adds queued_at (else created) -> now_ms to the kpi
  counters first_response_ms/_n of conv's queue and of agent (default: conv's agent). When agent
  is the assigned one and this is its first message of this assignment, also (routing):
  offer:<conv> cancelled, its offer_misses reset, and the customer's last_agent / last_agent_at
  set (sticky routing; cg_close sets them again).  -> 1
]]
-- HSET the field -> value table t into conv's hash, in one command (nothing when t is empty).
local function conv_hset(conv, t)
    local flat = {}
    for f, v in pairs(t) do
        flat[#flat + 1] = f
        flat[#flat + 1] = v
    end
    if #flat > 0 then redis.call('HSET', CG.KEY.conv(conv), unpack(flat)) end
end

-- HMGET conv's state, agent and the fields named after them: the reply h (h[1] state, h[2]
-- agent, then the fields), or nil and the error an agent's command gets when conv is not
-- assigned to agent: CLOSED, NOTASSIGNED.
local function conv_assigned_to(conv, agent, ...)
    local h = redis.call('HMGET', CG.KEY.conv(conv), 'state', 'agent', ...)
    if h[1] == 'closed' then return nil, redis.error_reply('CLOSED conversation is closed') end
    if h[1] ~= 'assigned' or h[2] ~= agent then
        return nil, redis.error_reply('NOTASSIGNED conversation is not assigned to you')
    end
    return h
end

-- ---- the desk's timings, remembered ------------------------------------------------------------
-- cg:deskcfg (the routers publish it: cg_deskcfg, redis/queue.lua) is read on every message of
-- the steady state; a Lua state keeps what it read (per key, so per tenant) until cg_deskcfg
-- replaces it. Write cg:deskcfg only through cg_deskcfg: a hash changed by hand is seen after the
-- next cg_deskcfg, restart of Redis or load of the library.
local deskcfg_memo = {}
local function desk_timings()
    local k = CG.KEY.deskcfg()
    local d = deskcfg_memo[k]
    if d then return d end
    local flat = redis.call('HGETALL', k)
    d = {}
    for i = 1, #flat, 2 do d[flat[i]] = flat[i + 1] end
    deskcfg_memo[k] = d
    return d
end

-- The capacity units a conversation of channel takes of its agent's cap (weight:<channel> of
-- cg:deskcfg, the router's channel_weights; 1 when not published).
local function channel_weight(channel)
    local w = tonumber(desk_timings()['weight:' .. (channel or '')])
    if not w or w <= 0 then return 1 end
    return w
end

-- The smallest weight of any channel: an agent with less room than this takes nothing more.
local function min_weight()
    local d = desk_timings()
    if d.min_weight_ then return d.min_weight_ end
    local m = 1
    for k, v in pairs(d) do
        local w = tonumber(v)
        if string.sub(k, 1, 7) == 'weight:' and w and w > 0 and w < m then m = w end
    end
    d.min_weight_ = m
    return m
end

-- A load (a sum of weights) as stored: at most 3 decimals, no trailing zeros ("1.5", "2").
local function fmt_load(x)
    if x < 0.0005 then return '0' end
    return (string.gsub(string.format('%.3f', x), '%.?0+$', ''))
end

-- Remember conv (created at now) among the customer's conversations, the newest CUST_CONVS.
local CUST_CONVS = 50
local function cust_convs_add(customer, conv, now)
    local k = CG.KEY.cust_convs(customer)
    redis.call('ZADD', k, fmt(tonumber(now) or 0), conv)
    if redis.call('ZCARD', k) > CUST_CONVS then
        redis.call('ZREMRANGEBYRANK', k, 0, -(CUST_CONVS + 1))
    end
end

-- The fields of a conversation the message path reads, in one HMGET: a table field -> value (nil
-- when absent). cg_append reads them once and hands them to the steps below.
local CONV_FIELDS = {'customer', 'state', 'agent', 'queue', 'channel', 'first_reply_at',
    'await_since', 'preview', 'survey_until', 'queued_at', 'created', 'seq', 'ep', 'answers',
    'assign_no', 'answered_no', 'ticket', 'rt'}
local function conv_fields(conv)
    local h = redis.call('HMGET', CG.KEY.conv(conv), unpack(CONV_FIELDS))
    local c = {}
    for i, f in ipairs(CONV_FIELDS) do c[f] = h[i] or nil end
    if c.await_since == '' then c.await_since = nil end -- ended (cg_append writes '', no HDEL)
    return c
end

-- The number the next message of an existing conversation gets (c: its conv_fields), and the
-- run to store as its ep when it changes (nil when not): SEQ_SKIP more when another run of the
-- library numbered its last message (see run_name). The caller writes both.
local function seq_plan(c)
    local run = run_name()
    local last = tonumber(c.seq) or 0
    if c.ep == run then return last + 1, nil end
    return last + SEQ_SKIP + 1, run
end

-- c: conv_fields(conv), or nil to read them.
-- The next-response limit (ms) of conversation c (conv_fields) when its next:<conv> timer is
-- left armed after an answer (the lazy rule, so a turn of the chat writes no timer): the desk's
-- timings are published, its queue counts no business hours and its channel has a limit; the
-- timer that fires then works out the due itself (await_since + the limit: cg_timer_fire).
-- nil otherwise (the router computes business-hours deadlines: the answer removes the timer).
local function next_lazy_ms(c)
    local d = desk_timings()
    if d.ready ~= '1' or d['hours:' .. (c.queue or '')] then return nil end
    local secs = tonumber(d['next_s:' .. (c.channel or '')]) or 0
    if secs <= 0 then return nil end
    return secs * 1000
end

-- A customer wrote in conv (c: conv_fields or nil): first:<conv> armed at first (ms, 0 = none)
-- before the first reply, else next:<conv> at nxt while assigned; next: only moves earlier (LT:
-- a timer left armed by an answer, or a shorter limit), so a wait keeps its first due.
local function sla_customer(conv, first, nxt, c)
    c = c or conv_fields(conv)
    if not c.state or c.state == 'closed' then return 0 end
    if not c.first_reply_at then
        if first > 0 then redis.call('ZADD', CG.KEY.timers(), 'NX', fmt(first), 'first:' .. conv) end
    elseif c.state == 'assigned' and nxt > 0 then
        redis.call('ZADD', CG.KEY.timers(), 'LT', fmt(nxt), 'next:' .. conv)
    end
    return 1
end

-- The assigned agent wrote in conv for the first time in this assignment (answered_no, set in
-- `set`, differs from assign_no; later messages skip this): offer:<conv> is cancelled, the
-- agent's offer_misses reset, cg:cust:<customer> gets last_agent, last_agent_at (sticky routing;
-- cg_close sets them again), and c.first_answer is set (kpi_response: the agent is in
-- cg:kpi:agents then).
local function agent_answered(conv, agent, now, c, set)
    if c.state ~= 'assigned' or c.agent ~= agent or c.answered_no == c.assign_no then return end
    redis.call('ZREM', CG.KEY.timers(), 'offer:' .. conv)
    redis.call('HDEL', CG.KEY.agent(agent), 'offer_misses')
    if c.customer then
        redis.call('HSET', CG.KEY.cust(c.customer), 'last_agent', agent, 'last_agent_at', now)
    end
    if c.assign_no then set.answered_no = c.assign_no end
    c.first_answer = true
end

-- c: conv_fields(conv), or nil to read them.
-- w: the conversation's writes of cg_append (one HSET at its end), or nil to write them here.
local function sla_agent(conv, now, agent, c, w)
    c = c or conv_fields(conv)
    local set = w or {}
    if not c.first_reply_at then
        set.first_reply_at = now
        local who = (agent and agent ~= '') and agent or c.agent
        kpi_add(c.queue, who, {CG.KPI.first_response_ms, kpi_ms(c.queued_at or c.created, now),
            CG.KPI.first_response_n, 1})
    end
    -- only the timers that can be armed (a ZREM that removes something goes to the AOF whole):
    -- first: before the first reply, next: while a customer message waits (await_since) unless
    -- it is left armed (next_lazy_ms), the complaint's respond deadline when there is a ticket
    local gone = {}
    if not c.first_reply_at then
        gone[#gone + 1] = 'first:' .. conv
    elseif c.await_since and c.await_since ~= '' and not next_lazy_ms(c) then
        gone[#gone + 1] = 'next:' .. conv
    end
    if c.ticket then gone[#gone + 1] = 'complaint_respond:' .. conv end
    if #gone > 0 then redis.call('ZREM', CG.KEY.timers(), unpack(gone)) end
    if agent and agent ~= '' then agent_answered(conv, agent, now, c, set) end
    if not w then conv_hset(conv, set) end
    return 1
end
