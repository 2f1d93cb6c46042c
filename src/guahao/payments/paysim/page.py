"""The sandbox cashier page (收银台): what the patient sees after "去支付"."""
from __future__ import annotations

from html import escape

STATE_TEXT = {"NOTPAY": "待支付", "SUCCESS": "支付成功", "REFUND": "已支付(已退款)", "PAYERROR": "支付失败",
              "CLOSED": "订单已关闭"}

_STYLE = """body{font-family:"PingFang SC","Microsoft YaHei","Noto Sans CJK SC",sans-serif;background:#f5f6f7;
margin:0;padding:2rem 1rem;color:#222}main{max-width:26rem;margin:auto;background:#fff;border-radius:.5rem;
padding:1.5rem;box-shadow:0 1px 4px #0002}h1{font-size:1.1rem;margin:0 0 1rem}.amount{font-size:2rem;margin:.5rem 0}
dl{display:grid;grid-template-columns:6rem 1fr;gap:.4rem;font-size:.9rem}dt{color:#777}
button{width:100%;padding:.8rem;margin-top:.8rem;font-size:1rem;border:0;border-radius:.4rem;cursor:pointer}
.pay{background:#07c160;color:#fff}.fail{background:#eee;color:#c00}.note{font-size:.8rem;color:#888;margin-top:1rem}"""


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def _shell(title: str, inner: str) -> str:
    return (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body><main>{inner}</main></body></html>")


def cashier(row) -> str:
    no = escape(row["out_trade_no"])
    state = row["state"]
    buttons = ""
    if state == "NOTPAY":
        buttons = (f'<form method="post"><button class="pay" formaction="/pay/{no}/pay">确认支付 ¥{yuan(row["amount"])}'
                   f'</button><button class="fail" formaction="/pay/{no}/fail">模拟支付失败</button></form>')
    inner = (f"<h1>模拟支付收银台</h1><div class=\"amount\">¥{yuan(row['amount'])}</div>"
             f"<dl><dt>商品</dt><dd>{escape(row['description'])}</dd><dt>订单号</dt><dd>{no}</dd>"
             f"<dt>状态</dt><dd id=\"state\">{STATE_TEXT.get(state, escape(state))}</dd></dl>{buttons}"
             f'<p class="note">这是沙箱环境,不会产生真实扣款。</p>')
    return _shell("模拟支付", inner)


def result(row, *, ok: bool, message: str) -> str:
    back = ""
    if row["return_url"]:
        back = f'<p><a href="{escape(row["return_url"], quote=True)}">返回商户页面</a></p>'
    inner = (f"<h1>{'支付成功' if ok else '支付未完成'}</h1><p>{escape(message)}</p>"
             f"<dl><dt>订单号</dt><dd>{escape(row['out_trade_no'])}</dd><dt>金额</dt><dd>¥{yuan(row['amount'])}</dd>"
             f"</dl>{back}")
    return _shell("支付结果", inner)
