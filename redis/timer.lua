-- redis/timer.lua -- timers and SLA: claims, breaches, position updates, offer timeouts, overflow
-- (a part of the chatgw library: redis/lib.lua).

local EVENTS_MAX = 100000

local function cg_timer_claim(keys, args)
    local a, named = map_or_args(args, {'now', 'lease', 'limit'})
    local now, lease, limit = tonumber(a.now), tonumber(a.lease), tonumber(a.limit) or 50
    if not now or not lease then return redis.error_reply('BADARG now, lease and limit expected') end
    local due = redis.call('ZRANGEBYSCORE', CG.KEY.timers(), '-inf', fmt(now), 'LIMIT', 0, limit)
    local until_ms = fmt(now + lease)
    for _, member in ipairs(due) do redis.call('ZADD', CG.KEY.timers(), until_ms, member) end
    if named then return answer('claimed', {lease = until_ms, members = due}) end
    local out = {} -- positional: the answer of the releases before VERSION 42
    for _, member in ipairs(due) do out[#out + 1] = {member, until_ms} end
    return out
end

-- Record a breach of kind on conv (c: its state before the action): counter on the conversation,
-- an entry in cg:events, and sla:<kind> + 1 in the kpi counters of the queue it was in and of
-- its agent when it was assigned.
local function breach_record(conv, kind, action, now, c)
    redis.call('HINCRBY', CG.KEY.conv(conv), 'sla_breaches', 1)
    kpi_add(c.queue, c.state == 'assigned' and c.agent or nil, {'sla:' .. kind, 1})
    redis.call('XADD', CG.KEY.events(), 'MAXLEN', '~', EVENTS_MAX, '*', 'type', 'sla_breach', 'conv',
        conv, 'kind', kind, 'action', action, 'ts', now)
end

-- Move queued conv to queue `to` at priority 9 (keeping its arrival time); serve `to`.
local function requeue(conv, c, to, now)
    if c.queue ~= '' then redis.call('ZREM', CG.KEY.queue(c.queue), conv) end
    local at = tonumber(c.queued_at) or tonumber(now) or 0
    redis.call('HSET', CG.KEY.conv(conv), 'queue', to, 'prio', 9)
    if c.queue ~= to then redis.call('HSET', CG.KEY.conv(conv), 'escalated_from', c.queue) end
    redis.call('ZADD', CG.KEY.queue(to), fmt(at), conv)
    if not is_held(to) then serve_queue(to, now) end
end

-- Take assigned conv back from its agent into its queue (priority 9) and serve the queue.
local function unassign(conv, c, now)
    local info = agent_info(c.agent)
    redis.call('SREM', CG.KEY.agent_convs(c.agent), conv)
    redis.call('SREM', CG.KEY.outbox_assign(), conv)
    load_release(info, conv)
    avail_refresh(info)
    redis.call('HSET', CG.KEY.conv(conv), 'state', 'queued', 'prev_agent', c.agent)
    redis.call('HDEL', CG.KEY.conv(conv), 'agent')
    requeue(conv, c, c.queue, now)
end

-- The breach action on conv. Returns what happened to it: moved | notified | raised | requeued.
local function breach_act(conv, c, action, to, now)
    if action == 'raise_priority' then
        if c.state ~= 'queued' then return 'noted' end
        local prio = math.min(9, (tonumber(c.prio) or 5) + 2)
        local at = tonumber(c.queued_at) or tonumber(now) or 0
        redis.call('HSET', CG.KEY.conv(conv), 'prio', prio)
        redis.call('ZADD', CG.KEY.queue(c.queue), 'XX', fmt((9 - prio) * E13 + at), conv)
        return 'raised'
    end
    if action == 'reassign' then
        if c.state ~= 'assigned' then return 'noted' end
        unassign(conv, c, now)
        return 'requeued'
    end
    redis.call('HSET', CG.KEY.conv(conv), 'escalated', 1)
    if c.state ~= 'queued' then return 'notified' end
    -- it keeps waiting in its own queue, first in line (priority 9, its arrival kept), for its
    -- own agents and for the agents of `to`, who get it pushed when one has a free slot
    local at = tonumber(c.queued_at) or tonumber(now) or 0
    redis.call('HSET', CG.KEY.conv(conv), 'prio', 9, 'escalated_to', to)
    redis.call('ZADD', CG.KEY.queue(c.queue), 'XX', fmt(at), conv)
    redis.call('SADD', CG.KEY.escalated(to), conv)
    if not is_held(c.queue) then serve_queue(c.queue, now) end
    if redis.call('HGET', CG.KEY.conv(conv), 'state') == 'queued' and
        redis.call('SISMEMBER', CG.KEY.closed_queues(), to) == 0 then
        local info = best_agent(to, conv_weight(conv))
        if info then assign(conv, info, now) end
    end
    return 'escalated'
end

local function fire_pos(conv, member, c, now, update_ms, max_ms)
    if c.state ~= 'queued' then return {'done'} end
    local rank = redis.call('ZRANK', CG.KEY.queue(c.queue), conv)
    if not rank then return {'done'} end
    redis.call('ZADD', CG.KEY.timers(), fmt(now + update_ms), member)
    local pos = rank + 1
    local last = tonumber(redis.call('HGET', CG.KEY.conv(conv), 'pos_last')) or 0
    local at = tonumber(redis.call('HGET', CG.KEY.conv(conv), 'pos_at')) or 0
    local closed = redis.call('SISMEMBER', CG.KEY.closed_queues(), c.queue) == 1
    if closed then return {'done'} end
    -- nobody who could serve it is online: no position updates; a customer who was told a
    -- position is told once that nobody is online now (pos_last 0), and hears its position again
    -- when someone is
    if not staffed(c.queue) then
        if last == 0 then return {'done'} end
        redis.call('HSET', CG.KEY.conv(conv), 'pos_last', 0, 'pos_at', fmt(now))
        local n = redis.call('HINCRBY', CG.KEY.conv(conv), 'pos_n', 1)
        return {'noagent', conv, c.channel, c.queue, c.locale, n}
    end
    local send = pos ~= last or now - at >= max_ms
    if not send then return {'done'} end
    redis.call('HSET', CG.KEY.conv(conv), 'pos_last', pos, 'pos_at', fmt(now))
    local n = redis.call('HINCRBY', CG.KEY.conv(conv), 'pos_n', 1)
    local slots, free = serving(c.queue)
    return {'pos', conv, pos, c.channel, c.queue, avg_ms(c.queue), c.locale, n, slots, free}
end

--[[
FCALL cg_timer_claim 1 <tenant> <map: now, lease, limit>
  Take up to `limit` timers of cg:timers due at `now` (ms): each gets the score now + lease (so
  another router takes it over only if this one does not fire it within the lease).
  -> 'claimed' lease (now + lease: the lease of every member, cg_timer_fire's), members
     ({member, ...}, the timers claimed, due first; {} when none is due)
  Positional arguments (now_ms lease_ms limit), as the routers of the releases before VERSION 42
  call it in a rolling upgrade, get their answer: {{member, lease}, ...}.
FCALL cg_timer_fire 1 <tenant> member lease now_ms update_ms max_ms action escalate_queue
  Fires a claimed timer once: only while its score is still `lease` (else {'stale'}: fired,
  cancelled or re-armed meanwhile). Members: pos:<conv>, first:<conv>, next:<conv>,
  complaint_respond:<conv>, complaint_resolve:<conv>, hours:<queue>.
  pos  -> {'pos', conv, position, channel, queue, avg_ms, locale, n, slots, free} (slots, free:
          the queue's serving capacity, assign.lua serving) when the customer is to be
          told (position changed, or max_ms passed), re-armed for now + update_ms; while nobody
          who serves the queue is online {'noagent', conv, channel, queue, locale, n} once (the
          customer had been told a position), then {'done'}; else {'done'}
  SLA  -> {'breach', kind, conv, result, channel, queue, locale, {online agents of escalate_queue},
          ticket, queue before, agent it was taken from (reassign) or ''} after recording the breach and acting (action escalate | raise_priority |
          reassign; see docs/architecture.md "Timers"); {'done'} for a closed conversation.
          next: (the lazy rule, desk.lua next_lazy_ms) {'done'} when nobody waits for an
          answer, and when the wait that runs began later: re-armed at await_since + limit.
          The breach counts sla:<kind> in cg:kpi:queue:<queue before> and, when it was
          assigned, cg:kpi:agent:<its agent>.
  hours-> {'hours', queue}: the router re-publishes the queue configuration
]]
local function cg_timer_fire(keys, args)
    local member, lease, now = args[1], args[2], tonumber(args[3])
    local update_ms, max_ms = tonumber(args[4]) or 15000, tonumber(args[5]) or 60000
    local action, to = args[6] or 'escalate', args[7] or 'supervisors'
    if not now then return redis.error_reply('BADARG member lease now_ms ...') end
    local score = redis.call('ZSCORE', CG.KEY.timers(), member)
    if not score or fmt(tonumber(score)) ~= lease then return {'stale'} end
    redis.call('ZREM', CG.KEY.timers(), member)
    local kind, id = string.match(member, '^([%a_]+):(.+)$')
    if not kind then return {'done'} end
    if kind == 'hours' then return {'hours', id} end
    local h = redis.call('HMGET', CG.KEY.conv(id), 'state', 'queue', 'channel', 'locale', 'prio',
        'queued_at', 'agent', 'ticket', 'await_since')
    local c = {state = h[1] or '', queue = h[2] or '', channel = h[3] or '', locale = h[4] or '',
        prio = h[5], queued_at = h[6], agent = h[7] or '', ticket = h[8] or ''}
    if c.state == '' or c.state == 'closed' then return {'done'} end
    if kind == 'next' then
        -- nobody waits (answered: a timer left armed by the lazy rule), or the wait that runs
        -- is not due yet (it began after the timer was armed): re-armed at its own due
        local since = tonumber(h[9])
        if not since then return {'done'} end
        local limit = next_lazy_ms(c)
        if limit and since + limit > now then
            redis.call('ZADD', CG.KEY.timers(), fmt(since + limit), member)
            return {'done'}
        end
    end
    if kind == 'pos' then return fire_pos(id, member, c, now, update_ms, max_ms) end
    local result = breach_act(id, c, action, to, fmt(now))
    breach_record(id, kind, action, fmt(now), c)
    local sups = {}
    if action == 'escalate' then sups = redis.call('SMEMBERS', CG.KEY.online(to)) end
    local q = redis.call('HGET', CG.KEY.conv(id), 'queue') or ''
    local prev = result == 'requeued' and c.agent or ''
    return {'breach', kind, id, result, c.channel, q, c.locale, sups, c.ticket, c.queue, prev}
end

-- cg_sla_customer: see redis/desk.lua (cg_append does the same itself).
local function cg_sla_customer(keys, args)
    return sla_customer(args[1], tonumber(args[2]) or 0, tonumber(args[3]) or 0)
end

--[[
cg_offer_arm(keys, {conv, assign_no, due_ms})   inside the library (announce)
  The assignment assign_no of conv was announced: arm offer:<conv> at due_ms once per assignment
  (offer_no = assign_no). -> 1 armed, 0 not (stale assignment, or already armed).
The offer and overflow timers (route_fire, fired by cg_route_timer in event.lua):
  offer:<conv>     conv still in the same assignment and unanswered: taken back from its agent
                   (load - 1, prev_agent, offer_misses + 1; after max_misses (> 0) consecutive
                   misses the agent's status becomes away and the count restarts), back in its
                   queue at its priority and arrival, and the queue served without that agent.
                   -> {'missed', conv, agent, misses, away 0|1, channel, queue, locale, assigned}
  overflow:<queue> the waiting conversations of queue past overflow_after_s: queue joins
                   cg:overflowing and the available agents of its overflow queues get them (push
                   queues; agents of those queues may also pick them, and see them in their queue
                   lists); re-armed for the next deadline; no overdue conversation: the queue
                   leaves cg:overflowing.  -> {'overflow', queue, assigned, {overflow queues}}
]]

local function cg_offer_arm(keys, args)
    local conv, no, due = args[1], args[2], tonumber(args[3]) or 0
    local h = redis.call('HMGET', CG.KEY.conv(conv), 'state', 'assign_no', 'offer_no', 'first_reply_at')
    if due <= 0 or h[1] ~= 'assigned' or h[2] ~= no or h[3] == no then return 0 end
    redis.call('HSET', CG.KEY.conv(conv), 'offer_no', no)
    redis.call('ZADD', CG.KEY.timers(), fmt(due), 'offer:' .. conv)
    return 1
end

-- offer:<conv> fired (see cg_route_fire).
local function offer_fire(conv, now, max_misses)
    local h = redis.call('HMGET', CG.KEY.conv(conv), 'state', 'agent', 'assign_no', 'offer_no', 'queue',
        'queued_at', 'prio', 'channel', 'locale')
    local agent, queue = h[2], h[5] or ''
    if h[1] ~= 'assigned' or not agent or h[3] ~= h[4] or queue == '' then return {'done'} end
    local info = agent_info(agent)
    redis.call('SREM', CG.KEY.agent_convs(agent), conv)
    redis.call('SREM', CG.KEY.outbox_assign(), conv)
    load_release(info, conv)
    redis.call('HSET', CG.KEY.conv(conv), 'state', 'queued', 'prev_agent', agent)
    redis.call('HDEL', CG.KEY.conv(conv), 'agent')
    local misses = redis.call('HINCRBY', CG.KEY.agent(agent), 'offer_misses', 1)
    local away = 0
    if max_misses > 0 and misses >= max_misses then
        set_status(info, 'away', now)
        redis.call('HDEL', CG.KEY.agent(agent), 'offer_misses')
        away = 1
    end
    local prio = tonumber(h[7]) or 5
    local at = tonumber(h[6]) or now
    redis.call('ZADD', CG.KEY.queue(queue), fmt((9 - prio) * E13 + at), conv)
    avail_remove_all(info) -- the next agent, not this one
    local n = 0
    if not is_held(queue) then n = serve_queue(queue, fmt(now)) end
    avail_refresh(info)
    return {'missed', conv, agent, misses, away, h[8] or '', queue, h[9] or '', n}
end

-- overflow:<queue> fired (see cg_route_fire).
local function overflow_fire(queue, now)
    local cfg = overflow_cfg(queue)
    if not cfg then
        redis.call('SREM', CG.KEY.overflowing(), queue)
        return {'done'}
    end
    -- each waiting conversation's ring (kept on it: `ring`, 0 = its own queue only) and the next
    -- ring deadline of any of them
    local overdue, next_due = 0, nil
    for _, conv in ipairs(redis.call('ZRANGE', CG.KEY.queue(queue), 0, MAX_SCAN - 1)) do
        local c = redis.call('HMGET', CG.KEY.conv(conv), 'state', 'queued_at', 'ring')
        if c[1] == 'queued' then
            local at = tonumber(c[2]) or now
            local k = ring_of(cfg, now - at)
            if k > 0 then overdue = overdue + 1 end
            if k ~= (tonumber(c[3]) or 0) then redis.call('HSET', CG.KEY.conv(conv), 'ring', k) end
            local nxt = cfg.rings[k + 1]
            if nxt and (next_due == nil or at + nxt.after < next_due) then next_due = at + nxt.after end
        end
    end
    if next_due then redis.call('ZADD', CG.KEY.timers(), 'LT', fmt(next_due), 'overflow:' .. queue) end
    if overdue == 0 then
        redis.call('SREM', CG.KEY.overflowing(), queue)
        return {'overflow', queue, 0, cfg.to}
    end
    redis.call('SADD', CG.KEY.overflowing(), queue)
    local n = 0
    if is_held(queue) then return {'overflow', queue, 0, cfg.to} end
    for _, oq in ipairs(cfg.to) do
        while not is_held(oq) do
            local conv = overflow_head(queue, cfg, now, {oq})
            local info = conv and best_agent(oq, conv_weight(conv))
            if not info then break end
            assign(conv, info, fmt(now))
            n = n + 1
        end
    end
    return {'overflow', queue, n, cfg.to}
end

-- A claimed offer:<conv> or overflow:<queue> timer under the lease rule of cg_timer_fire:
-- offer_fire's or overflow_fire's answer, {'done'} (another kind) or {'stale'}.
local function route_fire(member, lease, now, max_misses)
    local score = redis.call('ZSCORE', CG.KEY.timers(), member)
    if not score or fmt(tonumber(score)) ~= lease then return {'stale'} end
    redis.call('ZREM', CG.KEY.timers(), member)
    local kind, id = string.match(member, '^(%a+):(.+)$')
    if kind == 'offer' then return offer_fire(id, now, max_misses) end
    if kind == 'overflow' then return overflow_fire(id, now) end
    return {'done'}
end


redis.register_function{function_name = 'cg_timer_claim', callback = cg_timer_claim}
redis.register_function{function_name = 'cg_timer_fire', callback = cg_timer_fire}
redis.register_function{function_name = 'cg_sla_customer', callback = cg_sla_customer}
