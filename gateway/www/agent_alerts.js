/* agent_alerts.js -- how the agent console gets the agent's attention (window.AgentAlerts):
 * a short sound (Web Audio, no file to load) and a desktop notification (Notification API, only
 * once the agent granted it with the "Enable notifications" button). The title badge is the
 * console's own (agent.js updateTitle). Nothing here ever throws: a browser without audio or
 * notifications just stays silent. */
(function (global) {
    'use strict';
    var audio = null, lastBeep = 0;

    /* A two-tone chime of 0.25 s, at most one a second. Browsers allow sound only after the
     * agent interacted with the page; before that it is silently skipped. */
    function beep() {
        var now = Date.now();
        if (now - lastBeep < 1000) return false;
        lastBeep = now;
        try {
            var AC = global.AudioContext || global.webkitAudioContext;
            if (!AC) return false;
            audio = audio || new AC();
            if (audio.state === 'suspended' && audio.resume) audio.resume();
            var t0 = audio.currentTime;
            [880, 1320].forEach(function (hz, i) {
                var o = audio.createOscillator(), g = audio.createGain();
                o.type = 'sine';
                o.frequency.value = hz;
                g.gain.setValueAtTime(0.0001, t0 + i * 0.12);
                g.gain.exponentialRampToValueAtTime(0.15, t0 + i * 0.12 + 0.02);
                g.gain.exponentialRampToValueAtTime(0.0001, t0 + i * 0.12 + 0.12);
                o.connect(g);
                g.connect(audio.destination);
                o.start(t0 + i * 0.12);
                o.stop(t0 + i * 0.12 + 0.13);
            });
            return true;
        } catch (e) { return false; }
    }

    /* 'unsupported', 'granted', 'denied' or 'default' */
    function permission() {
        return 'Notification' in global ? global.Notification.permission : 'unsupported';
    }

    /* Ask for permission (from a click); done(permission) afterwards. */
    function request(done) {
        if (!('Notification' in global)) { done('unsupported'); return; }
        try {
            var p = global.Notification.requestPermission(function (r) { done(r); });
            if (p && p.then) p.then(done, function () { done(permission()); });
        } catch (e) { done(permission()); }
    }

    /* A desktop notification (tag: one per conversation, a newer one replaces it); clicking it
     * focuses the console and calls onclick. */
    function notify(title, body, tag, onclick) {
        if (permission() !== 'granted') return false;
        try {
            var n = new global.Notification(title, { body: body, tag: tag });
            n.onclick = function () { try { global.focus(); } catch (e) { /* */ } if (onclick) onclick(); n.close(); };
            return true;
        } catch (e) { return false; }
    }

    global.AgentAlerts = { beep: beep, notify: notify, permission: permission, request: request };
})(window);
