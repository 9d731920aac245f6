#!/usr/bin/python3
"""Regenerate the e-mail fixtures of tests/unit/test_channels_email.c.

Run with Debian's interpreter (it has the standard `email` package):
    /usr/bin/python3 tests/unit/data/make_eml.py
Every file is written deterministically (fixed dates, ids and boundaries), so a re-run changes
nothing unless this script changes. The expected values live in the C test.
"""
import base64
import os
from email import policy
from email.generator import BytesGenerator
from email.header import Header
from email.message import EmailMessage, Message
from email.mime.application import MIMEApplication
from email.mime.image import MIMEImage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr
import io

HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = "0123456789abcdef0123456789abcdef"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def write(name, msg):
    buf = io.BytesIO()
    BytesGenerator(buf, policy=policy.SMTP, mangle_from_=False).flatten(msg)
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(buf.getvalue())


def write_raw(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


def common(msg, subject, mid, frm=("张三", "zhangsan@example.cn")):
    msg["From"] = formataddr(frm)
    msg["To"] = "support@shop.example"
    msg["Subject"] = subject
    msg["Date"] = "Thu, 25 Apr 2024 10:00:00 +0800"
    msg["Message-ID"] = "<%s>" % mid
    if "MIME-Version" not in msg:
        msg["MIME-Version"] = "1.0"


def gb2312_label_gbk_bytes():
    """Labelled gb2312 but carrying GBK bytes (镕 is in GBK, not in GB2312), sent 8bit."""
    body = "朱镕基先生您好：\r\n我的订单还没有到，请帮忙查询。\r\n".encode("gbk")
    subj = "=?gb2312?B?%s?=" % base64.b64encode("镕钢订单".encode("gbk")).decode()
    raw = (b"From: =?gb2312?B?" + base64.b64encode("王镕".encode("gbk")) + b"?= <wangrong@example.cn>\r\n"
           b"To: support@shop.example\r\n"
           b"Subject: " + subj.encode() + b"\r\n"
           b"Date: Thu, 25 Apr 2024 10:00:00 +0800\r\n"
           b"Message-ID: <gb2312-1@example.cn>\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=gb2312\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n" + body)
    write_raw("gb2312_gbk_bytes.eml", raw)


def gbk_qp():
    msg = EmailMessage()
    common(msg, "GBK quoted-printable", "gbk-qp-1@example.cn")
    msg.set_content("退货地址：北京市海淀区\n谢谢！\n".encode("gbk"), "text", "plain",
                    cte="quoted-printable")
    msg.set_param("charset", "GBK")
    write("gbk_qp.eml", msg)


def utf8_base64():
    msg = EmailMessage()
    common(msg, "UTF-8 正文", "utf8-b64-1@example.cn")
    msg.set_content("你好，我想换一个颜色 🙂\n", cte="base64")
    write("utf8_base64.eml", msg)


def split_subject():
    """One subject split over a B and a Q encoded-word in the middle of a GBK character, then a
    UTF-8 word; the whitespace between adjacent encoded-words must vanish (RFC 2047 6.2)."""
    gbk = "关于订单".encode("gbk")  # 8 bytes; split after byte 3 (inside 于)
    b = base64.b64encode(gbk[:3]).decode()
    q = "".join("=%02X" % c for c in gbk[3:])
    u = base64.b64encode("的退款问题".encode("utf-8")).decode()
    raw = ("From: =?utf-8?Q?=E6=9D=8E=E5=9B=9B?= <lisi@example.cn>\r\n"
           "To: support@shop.example\r\n"
           "Subject: =?gb2312?B?%s?= =?gb2312?Q?%s?=\r\n =?utf-8?B?%s?= 12345\r\n"
           "Date: Thu, 25 Apr 2024 10:00:00 +0800\r\n"
           "Message-ID: <split-1@example.cn>\r\n"
           "MIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
           "see subject\r\n") % (b, q, u)
    write_raw("split_subject.eml", raw.encode())


def html_only():
    msg = EmailMessage()
    common(msg, "HTML only", "html-1@example.cn")
    html = ("<!DOCTYPE html><html><head><title>t</title><style>p{color:red}</style></head>"
            "<body><script>alert('x')</script><p>您好，</p><p>订单&nbsp;<b>A&amp;B</b> "
            "&lt;123&gt; &#20320;&#x597D;</p><div>第二行<br>第三行</div>"
            "<!-- a comment <p>hidden</p> -->"
            "<blockquote>quoted earlier text</blockquote></body></html>")
    msg.set_content(html, subtype="html", cte="quoted-printable")
    write("html_only.eml", msg)


def with_attachment():
    msg = MIMEMultipart("mixed", boundary="==att-boundary==")
    common(msg, "Invoice attached", "att-1@example.cn")
    msg.attach(MIMEText("Please see the invoice.\n", "plain", "utf-8"))
    pdf = MIMEApplication(b"%PDF-1.4\n" + b"0" * 1000, "pdf")
    pdf.add_header("Content-Disposition", "attachment", filename=("utf-8", "", "发票.pdf"))
    msg.attach(pdf)
    img = MIMEImage(PNG, "png")
    img.add_header("Content-Disposition", "attachment", filename="photo.png")
    msg.attach(img)
    write("attachment.eml", msg)


def nested():
    alt = MIMEMultipart("alternative", boundary="==alt==")
    alt.attach(MIMEText("纯文本正文\n", "plain", "utf-8"))
    alt.attach(MIMEText("<p>HTML 正文</p>", "html", "utf-8"))
    related = MIMEMultipart("related", boundary="==rel==")
    related.attach(alt)
    img = MIMEImage(PNG, "png")
    img.add_header("Content-ID", "<img1@example.cn>")
    img.add_header("Content-Disposition", "inline", filename="logo.png")
    related.attach(img)
    outer = MIMEMultipart("mixed", boundary="==mixed==")
    common(outer, "Nested", "nested-1@example.cn")
    outer.attach(related)
    doc = MIMEApplication(b"hello", "octet-stream")
    doc.add_header("Content-Disposition", "attachment", filename="notes.bin")
    outer.attach(doc)
    write("nested.eml", outer)


def reply_zh():
    msg = EmailMessage()
    common(msg, "回复：Re: 订单问题 [#cg-%s]" % TOKEN, "reply-zh-1@example.cn")
    msg["In-Reply-To"] = "<cg-aaaa@shop.example>"
    msg["References"] = "<first@example.cn> <cg-aaaa@shop.example>"
    msg.set_content("好的，谢谢！\n明天我在家。\n\n"
                    "在 2024年4月25日 周四 09:00，客服 <support@shop.example> 写道：\n"
                    "> 您的包裹明天送达。\n> 请保持电话畅通。\n", cte="base64")
    write("reply_zh.eml", msg)


def reply_en_plus_address():
    msg = EmailMessage()
    msg["From"] = "Bob <bob@example.com>"
    msg["To"] = "Support <support+cg-%s@shop.example>" % TOKEN.upper()
    msg["Subject"] = "RE: Fwd: re: Where is my parcel?"
    msg["Date"] = "Thu, 25 Apr 2024 12:00:00 +0000"
    msg["Message-ID"] = "<reply-en-1@example.com>"
    msg["In-Reply-To"] = "<cg-bbbb@shop.example>"
    msg.set_content("Thanks, that works.\n> inline quote dropped\nBest, Bob\n\n"
                    "On Thu, Apr 25, 2024 at 10:00 AM Support <support@shop.example>\n"
                    "wrote:\n> Your parcel ships tomorrow.\n")
    write("reply_en.eml", msg)


def outlook_reply():
    msg = EmailMessage()
    common(msg, "答复: 答复：发票", "outlook-1@example.cn")
    msg.set_content("已收到。\n\n-----原始邮件-----\n发件人: support@shop.example\n"
                    "主题: 发票\n\n请查收发票。\n")
    write("outlook_reply.eml", msg)


def auto_reply():
    msg = EmailMessage()
    common(msg, "自动回复: 订单问题", "auto-1@example.cn")
    msg["Auto-Submitted"] = "auto-replied"
    msg.set_content("我正在休假，5月6日回来。\n")
    write("auto_reply.eml", msg)


def bounce():
    msg = MIMEMultipart("report", report_type="delivery-status", boundary="==rep==")
    common(msg, "Undelivered Mail Returned to Sender", "bounce-1@mx.example",
           frm=("Mail Delivery System", "MAILER-DAEMON@mx.example"))
    msg.attach(MIMEText("This is the mail system at host mx.example.\n", "plain", "us-ascii"))
    ds = Message()
    ds["Content-Type"] = "message/delivery-status"
    per_msg, per_rcpt = Message(), Message()
    per_msg["Reporting-MTA"] = "dns; mx.example"
    per_rcpt["Final-Recipient"] = "rfc822; nobody@example.cn"
    per_rcpt["Action"] = "failed"
    per_rcpt["Status"] = "5.1.1"
    ds.set_payload([per_msg, per_rcpt])
    msg.attach(ds)
    write("bounce.eml", msg)


if __name__ == "__main__":
    gb2312_label_gbk_bytes()
    gbk_qp()
    utf8_base64()
    split_subject()
    html_only()
    with_attachment()
    nested()
    reply_zh()
    reply_en_plus_address()
    outlook_reply()
    auto_reply()
    bounce()
