-- redis/event.lua -- the event functions: one call for one event read from cg:in, with its
-- arguments as one msgpack map of named fields, built on the domains before it (a part of the
-- chatgw library: redis/lib.lua).

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
                the response-SLA deadlines (ms, 0 = none) armed when new (cg_sla_customer)
  -> {'new', <cg_enqueue's answer>}    the conversation was new: greeted (cmid cg:greet), its
                                       first-response deadline armed, queued, and assigned at
                                       once when its queue has a free agent
   | {'info', <cg_conv_info's answer>} any other state (or none): nothing changed; the router
                                       goes on from the state (waiting reply, response timers)
  Errors: BADARG (no map, or conv or now missing), and cg_enqueue's.
]]
local function cg_customer_msg(keys, args)
    local ok, a = pcall(cmsgpack.unpack, args[1] or '')
    if not ok or type(a) ~= 'table' or type(a.conv) ~= 'string' or a.conv == '' or
        not tonumber(a.now) then
        return redis.error_reply('BADARG a msgpack map with conv and now expected')
    end
    local conv, now = a.conv, fmt(tonumber(a.now))
    if redis.call('HGET', CG.KEY.conv(conv), 'state') ~= 'new' then
        return {'info', cg_conv_info(keys, {conv})}
    end
    if type(a.greet) == 'string' and a.greet ~= '' then
        cg_append(keys, {conv, 'cg:greet', 'bot', a.sender or 'chatgw', a.greet, '', a.channel or '',
            now, 'sys'})
    end
    sla_customer(conv, tonumber(a.first_due) or 0, tonumber(a.next_due) or 0)
    return {'new', cg_enqueue(keys, {conv, a.queue or '', tostring(tonumber(a.prio) or 0), now,
        a.category or '', a.locale or '', fmt(tonumber(a.pos_ms) or 0),
        fmt(tonumber(a.sticky_ms) or 0)})}
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
  and arms nothing: {'stale'}.  -> {'announced', seq of the event}
  Errors: BADARG.
]]
local function cg_announce(keys, args)
    local ok, a = pcall(cmsgpack.unpack, args[1] or '')
    if not ok or type(a) ~= 'table' or type(a.conv) ~= 'string' or type(a.agent) ~= 'string' or
        not tonumber(a.assign_no) or not tonumber(a.now) then
        return redis.error_reply('BADARG a msgpack map with conv, agent, assign_no and now expected')
    end
    local conv, no, now = a.conv, fmt(tonumber(a.assign_no)), fmt(tonumber(a.now))
    redis.call('SREM', CG.KEY.outbox_assign(), conv)
    local h = redis.call('HMGET', CG.KEY.conv(conv), 'state', 'agent', 'assign_no')
    if h[1] ~= 'assigned' or h[2] ~= a.agent or h[3] ~= no then return {'stale'} end
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
    return {'announced', seq}
end

redis.register_function{function_name = 'cg_customer_msg', callback = cg_customer_msg}
redis.register_function{function_name = 'cg_announce', callback = cg_announce}
