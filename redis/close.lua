-- redis/close.lua -- how conversations end: close, customer close, unresolved, after close, idle
-- close (a part of the chatgw library: redis/lib.lua).

--[[
FCALL cg_close 1 <tenant> conv agent resolution now_ms
  conv must be assigned to agent: state closed, closed_at, resolution, agent load - 1, and the
  freed slot is offered the best waiting conversation of the agent's skills (push queues only).
  -> {'closed', channel, {ROW, ...}, locale}, or {'already', channel, {}, locale} when this agent
  had already closed it (a re-processed command). Also drops the conversation's timers and adds
  its assigned -> closed time to cg:stats:<queue> (rolling average avg_ms over the last ~20, n).
  Counts the close in cg:kpi:queue:<queue> and cg:kpi:agent:<agent> (closed; resolved,
  resolution time and fcr for a code starting with "resolved"; abandoned: see kpi_close).
  Errors: NOTASSIGNED, CLOSED (closed by another agent).
]]

-- Add the conversation's assigned -> closed time to its queue's rolling average (the last ~20).
local function stats_add(conv, now)
    local c = redis.call('HMGET', CG.KEY.conv(conv), 'queue', 'assigned_at')
    local at, t = tonumber(c[2]), tonumber(now)
    if not c[1] or c[1] == '' or not at or not t or t < at then return end
    local k = CG.KEY.stats(c[1])
    local n = redis.call('HINCRBY', k, 'n', 1)
    local avg = tonumber(redis.call('HGET', k, 'avg_ms')) or 0
    if n > 20 then n = 20 end
    redis.call('HSET', k, 'avg_ms', fmt(avg + (t - at - avg) / n))
end

-- ---- desk metrics (kpi_add, kpi_ms: redis/desk.lua) ----------------------------------

-- cg_close counted: closed; a resolved code (starting with "resolved", as for complaint follow-ups)
-- also resolved, its resolution time (queued_at or created -> now) and fcr when it was never
-- re-assigned (assign_no 1, no prev_agent: no transfer, offer timeout, reassign or unresolved);
-- no_response with no agent answer to the customer (answers, await_since: cg_append) is abandoned.
local function kpi_close(conv, agent, resolution, now)
    local h = redis.call('HMGET', CG.KEY.conv(conv), 'queue', 'queued_at', 'created', 'assign_no',
        'prev_agent', 'answers', 'await_since')
    local kv = {'closed', 1}
    if string.sub(resolution, 1, 8) == 'resolved' then
        kv = {'closed', 1, 'resolved', 1, 'resolution_ms', kpi_ms(h[2] or h[3], now),
            'resolution_n', 1}
        if h[4] == '1' and not h[5] then
            kv[#kv + 1] = 'fcr'
            kv[#kv + 1] = 1
        end
    end
    kpi_add(h[1], agent, kv)
    kpi_pending_flush(conv)
    local gone = resolution == 'no_response' or resolution == 'customer_left'
    if gone and (tonumber(h[6]) or 0) == 0 and h[7] and h[7] ~= '' then
        kpi_add(h[1], nil, {'abandoned', 1})
    end
end

-- Drop every timer of conv (it is closed).
local function timers_drop(conv)
    for _, kind in ipairs({'pos', 'first', 'next', 'complaint_respond', 'complaint_resolve'}) do
        redis.call('ZREM', CG.KEY.timers(), kind .. ':' .. conv)
    end
end

local function cg_close(keys, args)
    local conv, agent, resolution, now = args[1], args[2], args[3], args[4]
    if now == nil then return redis.error_reply('BADARG conv agent resolution now_ms expected') end
    local c = redis.call('HMGET', CG.KEY.conv(conv), 'state', 'agent', 'channel', 'locale',
        'customer', 'assign_no', 'answered_no')
    if c[1] == 'closed' then
        if c[2] == agent then return {'already', c[3] or '', {}, c[4] or ''} end
        return redis.error_reply('CLOSED conversation is closed')
    end
    if c[1] ~= 'assigned' or c[2] ~= agent then
        return redis.error_reply('NOTASSIGNED conversation is not assigned to you')
    end
    if resolution == '' then resolution = 'resolved' end
    redis.call('HSET', CG.KEY.conv(conv), 'state', 'closed', 'closed_at', now, 'resolution', resolution)
    if c[5] and c[6] and c[7] == c[6] then -- it answered: sticky from the end of the chat
        redis.call('HSET', CG.KEY.cust(c[5]), 'last_agent', agent, 'last_agent_at', now)
    end
    stats_add(conv, now)
    kpi_close(conv, agent, resolution, now)
    timers_drop(conv)
    redis.call('SREM', CG.KEY.agent_convs(agent), conv)
    redis.call('SREM', CG.KEY.outbox_assign(), conv)
    local info = agent_info(agent)
    load_release(info, conv)
    avail_refresh(info)
    return {'closed', c[3] or '', offer(info, now), c[4] or ''}
end

-- ---- the customer ends the conversation (router/agent.c, customer_on_close) ----------------

--[[
FCALL cg_customer_close 1 <tenant> conv customer now_ms
  The customer ends conv (the widget's "End chat"). Waiting (state new or queued): it leaves its
  queue and is closed with resolution abandoned (closed_by customer, its timers dropped; counted
  as closed and abandoned for its queue). Assigned: closed as by its agent with resolution
  customer_left (cg_close: the agent's slot freed and offered other work; abandoned too when no
  agent message had answered the customer).
  -> {'abandoned', channel, locale, queue} | {'ended', channel, locale, queue, agent, {ROW, ...}}
     | {'already'} (closed before, not by its customer)
  Closed by its customer before (the same entry processed again: a router died after this call
  and before it told both sides): the same answer again, with no ROWs (those assignments are in
  the outbox), so the router does what it did not finish; everything it does is idempotent
  (deterministic cmids).
  Errors: NOTYOURS, BADARG.
]]

local function cg_customer_close(keys, args)
    local conv, customer, now = args[1], args[2], args[3]
    if not now then return redis.error_reply('BADARG conv customer now_ms expected') end
    local h = redis.call('HMGET', CG.KEY.conv(conv), 'state', 'customer', 'agent', 'queue', 'channel',
        'locale')
    if not h[2] or h[2] ~= customer then
        return redis.error_reply('NOTYOURS conversation is not yours')
    end
    local channel, locale, queue = h[5] or '', h[6] or '', h[4] or ''
    if h[1] == 'closed' then
        local c = redis.call('HMGET', CG.KEY.conv(conv), 'closed_by', 'resolution')
        if c[1] ~= 'customer' then return {'already'} end
        if c[2] == 'abandoned' then return {'abandoned', channel, locale, queue} end
        return {'ended', channel, locale, queue, h[3] or '', {}}
    end
    if h[1] == 'assigned' and h[3] then
        local r = cg_close(keys, {conv, h[3], 'customer_left', now})
        redis.call('HSET', CG.KEY.conv(conv), 'closed_by', 'customer')
        return {'ended', channel, locale, queue, h[3], r[3]}
    end
    if queue ~= '' then redis.call('ZREM', CG.KEY.queue(queue), conv) end
    redis.call('HSET', CG.KEY.conv(conv), 'state', 'closed', 'closed_at', now, 'resolution', 'abandoned',
        'closed_by', 'customer')
    timers_drop(conv)
    kpi_add(queue, nil, {'closed', 1, 'abandoned', 1})
    kpi_pending_flush(conv) -- answered before it went back to its queue
    return {'abandoned', channel, locale, queue}
end


-- ---- how conversations end: unresolved, after close, idle close, complaint follow-up ---------

--[[
cg_reopen(keys, {conv, agent, now_ms})   inside the library (cg_agent_close's unresolved codes)
  The agent ends conv as unresolved: it is not closed (rule 15). It goes back to its queue at
  priority 9, in its arrival order (queued_at kept), the agent's slot is freed (load - 1), the
  idle timer is dropped and the queue is served without that agent: another available agent gets
  it at once (announced through the outbox). The freed slot is offered other waiting
  conversations only when this one was taken (never this one straight back).
  -> {'requeued', channel, locale, queue, {ROW, ...} offered to the agent}
  Errors: NOTASSIGNED, CLOSED (as cg_close).
FCALL cg_after_close 1 <tenant> conv survey_until followup_due
  After a close: survey_until (ms, 0 = no survey) is stored once on conv (cg_append takes a rating
  for it until then), idle:<conv> is dropped, followup:<conv> is armed at followup_due when > 0
  and conv has a complaint ticket.  -> the ticket or ''
FCALL cg_close_fire 1 <tenant> member lease now_ms newconv followup_queue
  Fires a claimed idle:<conv> or followup:<conv> timer once (the lease rule of cg_timer_fire).
  idle     -> conv still assigned and no message of either side for idle_close_s (the log's
              last customer or agent text or attachment, last_activity; a message after the
              timer was armed re-arms it for idle_close_s after that message: {'done'}): closed with resolution no_response as by its agent
              (cg_close)  -> {'idle', conv, agent, channel, locale, {ROW, ...}}
  followup -> a follow-up task newconv: state queued in followup_queue at priority 9, customer,
              channel, locale, name and reply address copied from conv, followup_of = conv,
              followup_ticket, category followup, preview "Follow-up <ticket>"; conv gets
              followup_conv; the queue is served (assignments through the outbox)
              -> {'followup', newconv, queue, ticket, assigned count}
  otherwise {'done'} (nothing to do), or {'stale'}.
]]

local function cg_reopen(keys, args)
    local conv, agent, now = args[1], args[2], args[3]
    if now == nil then return redis.error_reply('BADARG conv agent now_ms expected') end
    local h, err = conv_assigned_to(conv, agent, 'channel', 'locale', 'queue', 'queued_at')
    if not h then return err end
    local info = agent_info(agent)
    redis.call('SREM', CG.KEY.agent_convs(agent), conv)
    redis.call('SREM', CG.KEY.outbox_assign(), conv)
    load_release(info, conv)
    avail_remove_all(info) -- while the queue is served: never back to this agent
    redis.call('HSET', CG.KEY.conv(conv), 'state', 'queued', 'prev_agent', agent, 'unresolved_at', now)
    redis.call('HDEL', CG.KEY.conv(conv), 'agent')
    redis.call('HINCRBY', CG.KEY.conv(conv), 'unresolved_n', 1)
    redis.call('ZREM', CG.KEY.timers(), 'idle:' .. conv)
    local c = {queue = h[5] or '', queued_at = h[6]}
    requeue(conv, c, c.queue, now)
    avail_refresh(info)
    local rows = {}
    if redis.call('HGET', CG.KEY.conv(conv), 'state') ~= 'queued' then rows = offer(info, now) end
    return {'requeued', h[3] or '', h[4] or '', c.queue, rows}
end

local function cg_after_close(keys, args)
    local conv, survey_until, due = args[1], tonumber(args[2]) or 0, tonumber(args[3]) or 0
    local h = redis.call('HMGET', CG.KEY.conv(conv), 'state', 'ticket')
    if h[1] ~= 'closed' then return '' end
    redis.call('ZREM', CG.KEY.timers(), 'idle:' .. conv)
    if survey_until > 0 then
        redis.call('HSETNX', CG.KEY.conv(conv), 'survey_until', fmt(survey_until))
    end
    if due > 0 and h[2] then
        redis.call('ZADD', CG.KEY.timers(), 'NX', fmt(due), 'followup:' .. conv)
    end
    return h[2] or ''
end

local function cg_close_fire(keys, args)
    local member, lease, now = args[1], args[2], args[3]
    if now == nil then return redis.error_reply('BADARG member lease now_ms ...') end
    local score = redis.call('ZSCORE', CG.KEY.timers(), member)
    if not score or fmt(tonumber(score)) ~= lease then return {'stale'} end
    redis.call('ZREM', CG.KEY.timers(), member)
    local kind, conv = string.match(member, '^(%a+):(.+)$')
    if kind == 'followup' then return followup_task(conv, args[4] or '', args[5] or '', now) end
    if kind ~= 'idle' then return {'done'} end
    local c = redis.call('HMGET', CG.KEY.conv(conv), 'state', 'agent')
    if c[1] ~= 'assigned' or not c[2] then return {'done'} end
    -- a message came after the timer was armed (cg_append leaves the timer where it is):
    -- re-armed for idle_close_s after that message
    local idle_ms = (tonumber(desk_timings().idle_close_s) or 0) * 1000
    local last = idle_ms > 0 and last_activity(conv) or 0
    if idle_ms > 0 and last + idle_ms > (tonumber(now) or 0) then
        redis.call('ZADD', CG.KEY.timers(), fmt(last + idle_ms), member)
        return {'done'}
    end
    local r = cg_close(keys, {conv, c[2], 'no_response', now})
    return {'idle', conv, c[2], r[2], r[4], r[3]}
end


redis.register_function{function_name = 'cg_close', callback = cg_close}
redis.register_function{function_name = 'cg_customer_close', callback = cg_customer_close}
redis.register_function{function_name = 'cg_after_close', callback = cg_after_close}
redis.register_function{function_name = 'cg_close_fire', callback = cg_close_fire}
