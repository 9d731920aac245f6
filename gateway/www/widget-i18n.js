/* widget-i18n.js -- the customer widget's own words, in zh-CN (the default) and en.
 *
 * window.ChatGWi18n:
 *   uiLocale(tag)        'en' for an English tag (en, en-US, …), else 'zh-CN'
 *   wireLocale(tag)      tag when it looks like a BCP 47 tag (≤ 15 bytes), else 'zh-CN': what the
 *                        widget tells the desk (identity.locale), so bot templates follow it
 *   translator(locale)   t(key, vars): the string of key with {name} placeholders filled in
 *                        (vars are inserted as text; the widget puts every string in with
 *                        textContent). An unknown key is returned as is.
 * Both tables have the same keys (tests/browser/widget_embed.mjs checks). */
(function (global) {
    'use strict';

    var STRINGS = {
        'zh-CN': {
            launcher: '联系客服', unread: '{n} 条未读消息', title: '在线客服', panel: '在线客服对话', message: '消息',
            online: '在线', connecting: '连接中…', offline: '离线', unavailable: '暂不可用',
            reconnecting: '离线 · {s} 秒后重连',
            empty_title: '您好 👋', empty_text: '关于订单、配送或退货，有什么可以帮您？',
            placeholder: '输入消息…', placeholder_closed: '输入消息以开始新的对话…',
            send: '发送', end: '结束对话', minimize: '收起对话', emoji: '插入表情',
            download: '下载聊天记录', new_conversation: '新的对话',
            queue: '您前面排在第 {n} 位', wait_short: '等待不到一分钟', wait_minutes: '预计等待约 {m} 分钟',
            typing: '{name} 正在输入…', agent: '客服', you: '我', customer: '顾客', system: '系统',
            bot: '智能助手', someone: '有人', an_agent: '一位客服',
            joined: '{name} 已加入对话', left: '{name} 已离开对话', transferred: '对话已转接',
            transferred_to: '对话已转接给 {to}', closed: '对话已结束', survey: '请为本次服务评分',
            rated: '您的评分：{n}/5', rate_n: '{n} 星（共 5 星）', stars: '服务评分',
            sending: '发送中…', not_sent: '未发送', retry: '重试', sent: '已发送', read: '已读',
            too_long: '消息过长（最多 32 KB）。',
            session_expired: '您之前的会话已过期，正在开始新的会话。',
            today: '今天', yesterday: '昨天',
            prechat_title: '开始对话前，请告诉我们如何称呼您', name: '姓名', email_optional: '电子邮箱（可选）',
            start: '开始对话', name_required: '请输入您的称呼。', bad_email: '请输入有效的电子邮箱地址。',
            email_text: '我的电子邮箱：{email}', email: '电子邮箱', submit: '提交',
            desk_closed: '现在没有客服在线。留下您的电子邮箱，我们会尽快回复您。',
            email_thanks: '谢谢！我们会发邮件到 {email} 联系您。',
            transcript: '聊天记录', attachment: '附件',
            error: '出错了（{code}）', err_rate_limited: '发送太快了，稍后自动重试',
            err_unavailable: '服务暂时不可用，稍后自动重试', err_busy: '服务繁忙，稍后自动重试',
            err_too_large: '消息过长', err_bad_value: '内容未被接受', err_bad_utf8: '消息包含无效字符',
            err_closed: '对话已结束', err_limit_reached: '新对话过多，请稍后再试',
            err_bad_token: '您的会话无效', err_expired_token: '您的会话已过期',
            err_unknown_tenant: '此聊天窗口设置的客服系统不是本服务，无法开始对话。请联系网站管理员。',
            err_hello: '此聊天窗口设置有误，无法开始对话（{code}）。请联系网站管理员。'
        },
        en: {
            launcher: 'Chat with us', unread: '{n} unread', title: 'Support', panel: 'Customer support chat', message: 'Message',
            online: 'Online', connecting: 'Connecting…', offline: 'Offline', unavailable: 'Unavailable',
            reconnecting: 'Offline · reconnecting in {s} s',
            empty_title: 'Hi there 👋', empty_text: 'Ask us anything about your order, shipping or returns.',
            placeholder: 'Type your message…', placeholder_closed: 'Write to start a new conversation…',
            send: 'Send', end: 'End chat', minimize: 'Minimize chat', emoji: 'Insert an emoji',
            download: 'Download the transcript', new_conversation: 'New conversation',
            queue: 'You are #{n} in line', wait_short: 'under a minute', wait_minutes: 'about {m} min',
            typing: '{name} is typing…', agent: 'Agent', you: 'You', customer: 'Customer', system: 'System',
            bot: 'Assistant', someone: 'Someone', an_agent: 'An agent',
            joined: '{name} joined', left: '{name} left', transferred: 'Conversation transferred',
            transferred_to: 'Conversation transferred to {to}', closed: 'Conversation closed',
            survey: 'How did we do?', rated: 'You rated {n}/5', rate_n: 'Rate {n} of 5', stars: 'Rating',
            sending: 'Sending…', not_sent: 'Not sent', retry: 'Retry', sent: 'Sent', read: 'Read',
            too_long: 'The message is too long (32 KB at most).',
            session_expired: 'Your previous chat session has expired; starting a new one.',
            today: 'Today', yesterday: 'Yesterday',
            prechat_title: 'Before we start, tell us who you are', name: 'Name', email_optional: 'E-mail (optional)',
            start: 'Start chat', name_required: 'Please enter your name.', bad_email: 'Please enter a valid e-mail address.',
            email_text: 'My e-mail: {email}', email: 'E-mail', submit: 'Send',
            desk_closed: 'Nobody is available right now. Leave your e-mail and we will get back to you.',
            email_thanks: 'Thank you! We will write to {email}.',
            transcript: 'Chat transcript', attachment: 'attachment',
            error: 'Error ({code})', err_rate_limited: 'You are sending too fast, retrying shortly',
            err_unavailable: 'The service is temporarily unavailable, retrying shortly',
            err_busy: 'The service is busy, retrying shortly',
            err_too_large: 'The message is too long', err_bad_value: 'This was not accepted',
            err_bad_utf8: 'The message contains invalid characters', err_closed: 'This conversation is closed',
            err_limit_reached: 'Too many new conversations; please try again later',
            err_bad_token: 'Your session is not valid', err_expired_token: 'Your session has expired',
            err_unknown_tenant: 'This chat is set up for another support desk and cannot start; please let the shop know',
            err_hello: 'This chat is not set up correctly and cannot start ({code}); please let the shop know'
        }
    };

    function uiLocale(tag) {
        return /^en(-|$)/i.test(String(tag || '')) ? 'en' : 'zh-CN';
    }

    function wireLocale(tag) {
        tag = String(tag || '');
        return tag.length <= 15 && /^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$/.test(tag) ? tag : 'zh-CN';
    }

    function translator(locale) {
        var table = STRINGS[locale] || STRINGS['zh-CN'];
        return function t(key, vars) {
            var s = Object.prototype.hasOwnProperty.call(table, key) ? table[key] : key;
            if (!vars) return s;
            return s.replace(/\{(\w+)\}/g, function (m, k) {
                return Object.prototype.hasOwnProperty.call(vars, k) ? String(vars[k]) : m;
            });
        };
    }

    global.ChatGWi18n = { uiLocale: uiLocale, wireLocale: wireLocale, translator: translator,
        locales: Object.keys(STRINGS), strings: STRINGS };
})(window);
