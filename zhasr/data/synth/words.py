"""What the synthetic calls say: call-center sentence templates by topic, the word lists that fill
them, and numbers written out as a Mandarin speaker reads them."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

DIGITS = "零一二三四五六七八九"
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓彭苏卢蒋蔡贾丁魏薛叶阎余潘杜戴夏钟汪田任姜范方石姚谭廖邹熊金陆郝孔白崔康毛邱秦江史顾侯邵孟龙万段雷钱汤尹黎易常武乔贺赖龚文"
GIVEN_NAMES = (
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "华",
    "平", "刚", "婷", "秀英", "桂英", "建华", "浩然", "子涵", "欣怡", "宇轩", "思远", "晓东", "海燕", "国强",
    "志明", "玉兰", "雨桐", "俊杰", "佳琪", "文博", "梦瑶", "家豪", "丽华", "春梅", "建国", "晓明", "亚楠",
)
TITLES = ("先生", "女士")
COMPANIES = ("优选商城", "万家电器", "星辰网购", "乐购超市", "惠民家居", "云海数码", "百顺物流", "安心保险")
PRODUCTS = (
    "手机壳", "蓝牙耳机", "电饭煲", "空气净化器", "洗衣机", "羽绒服", "运动鞋", "台灯", "保温杯", "充电宝",
    "笔记本电脑", "扫地机器人", "电动牙刷", "四件套", "儿童座椅", "微波炉", "电风扇", "行李箱", "平板电脑",
    "智能手表", "吹风机", "榨汁机", "路由器", "显示器", "机械键盘", "无线鼠标", "投影仪", "加湿器", "电热水壶",
    "跑步机", "冰箱", "空调", "床垫", "沙发", "书桌", "奶粉", "纸尿裤", "洗发水", "面膜", "茶叶",
)
COURIERS = ("顺丰", "京东物流", "中通", "圆通", "申通", "韵达", "邮政", "极兔")
CITIES = (
    "北京", "上海", "广州", "深圳", "杭州", "成都", "武汉", "南京", "西安", "天津", "苏州", "郑州", "青岛",
    "济南", "合肥", "福州", "昆明", "南宁", "沈阳", "大连", "长春", "哈尔滨", "石家庄", "太原", "南昌", "贵阳",
)
DISTRICTS = ("朝阳区", "海淀区", "浦东新区", "天河区", "南山区", "西湖区", "武侯区", "江汉区", "鼓楼区",
             "雁塔区", "和平区", "高新区", "经开区", "新城区", "滨江区", "江北区")
ROADS = ("人民路", "中山路", "解放路", "建设路", "和平路", "幸福路", "南京路", "光明路", "文化路", "新华路",
         "青年路", "胜利路", "学府路", "友谊路", "东风路", "春华路")
WEEKDAYS = ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期天", "周一", "周三", "周五", "周末")
DAY_PARTS = ("上午", "下午", "晚上")
OPENERS = ("", "", "", "", "好的，", "那个，", "对，", "是这样的，", "喂，", "麻烦问一下，")


# Topic -> templates. Slots: see _Fillers. Each call draws its clips from one topic,
# plus greetings and closings.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "greeting": (
        "您好，这里是{company}客服中心，请问有什么可以帮您？",
        "您好，工号{agent}为您服务，请问有什么可以帮您？",
        "{surname}{title}您好，请问您是想咨询订单的问题吗？",
        "你好，是{company}的客服吗？",
        "你好，我想咨询一下{product}的问题。",
        "您好，我是{company}的客服，请问是{name}吗？",
    ),
    "order": (
        "我想查一下订单号{order}的物流信息。",
        "我{weekday}买的{product}到现在还没有发货。",
        "您的订单已经由{courier}发出，预计{date}送达。",
        "请问您的订单号是多少？",
        "订单号是{order}，麻烦您帮我查一下。",
        "快递单号是{order}，显示还在{city}的转运中心。",
        "我{date}下的单，一共买了{count}件商品。",
        "系统显示您的{product}正在派送中，请保持电话畅通。",
        "{product}预计{weekday}从{city}仓库发货。",
    ),
    "refund": (
        "我要申请退款，{product}有质量问题。",
        "退款金额是{amount}，三到五个工作日原路退回。",
        "您的退款申请已经通过，{amount}会退回到您的账户。",
        "我买的{product}不想要了，还能退货吗？",
        "退货运费由我们承担，{surname}{title}请您放心。",
        "退款已经过了{days}天了，为什么还没到账？",
        "这个{product}才用了{days}天就坏了，我要求换货。",
    ),
    "address": (
        "我要把收货地址改成{city}{district}{road}{house}号。",
        "请问您的收货地址是{city}{district}{road}{house}号吗？",
        "好的，已经为您把地址修改为{district}{road}{house}号。",
        "我搬家了，新地址在{city}{district}，麻烦改一下。",
        "收件人写{name}，电话尾号{phone4}。",
    ),
    "delivery": (
        "{courier}的快递员没打电话就把包裹放在门口了。",
        "我的{product}显示已经签收了，但是我根本没收到。",
        "送来的{product}外包装破了，里面的东西也坏了。",
        "快递已经晚了{days}天了，你们到底什么时候能送到？",
        "非常抱歉给您带来不便，我们马上联系{courier}处理。",
        "麻烦让快递员{date}{time}再送一次。",
        "师傅{weekday}{time}上门安装{product}可以吗？",
    ),
    "account": (
        "为了核实您的身份，请告诉我您手机号的后四位。",
        "手机号后四位是{phone4}。",
        "请问您的姓名是{name}吗？",
        "我叫{name}，手机尾号{phone4}。",
        "验证码是{code6}，请在五分钟内输入。",
        "您的账户余额还有{amount}。",
        "我的账号{weekday}被锁住了，一直登录不上去。",
        "这个月的账单多扣了我{amount}，请帮我查一下。",
        "您本次消费{amount}，优惠券减免了{amount2}。",
    ),
    "closing": (
        "请问还有其他可以帮您的吗？",
        "{surname}{title}，请问还有其他问题吗？",
        "没有了，谢谢你，再见。",
        "感谢您的来电，祝您生活愉快，再见。",
        "感谢您致电{company}，再见。",
        "稍后会有一条满意度短信，请您给我们打个分。",
        "好的{surname}{title}，问题已经记录，我们会在{hours}小时内回复您。",
        "好的，那我{weekday}等你们的电话。",
        "那就麻烦你们了，我{time}以后都在家。",
    ),
}
TOPICS = ("order", "refund", "address", "delivery", "account")  # what a call is about


def digits_zh(digits: str) -> str:
    """``"3572"`` -> ``"三五七二"``: a digit string read digit by digit."""
    return "".join(DIGITS[int(d)] for d in digits)


def _below_10k(n: int, leading: bool) -> str:
    out, zero_pending = [], False
    for unit, d in zip("千百十 ", f"{n:04d}"):
        d = int(d)
        if d == 0:
            zero_pending = bool(out)
            continue
        if zero_pending:
            out.append("零")
            zero_pending = False
        if not (unit == "十" and d == 1 and leading and not out):
            out.append(DIGITS[d])
        out.append(unit.strip())
    return "".join(out)


def int_zh(n: int) -> str:
    """A count or amount as read aloud: 15 -> 十五, 105 -> 一百零五, 20010 -> 二万零一十 (0 <= n < 10**8)."""
    if not 0 <= n < 10**8:
        raise ValueError(f"int_zh: {n} out of range [0, 1e8)")
    if n == 0:
        return "零"
    high, low = divmod(n, 10000)
    if not high:
        return _below_10k(low, leading=True)
    text = _below_10k(high, leading=True) + "万"
    if low:
        text += ("零" if low < 1000 else "") + _below_10k(low, leading=False)
    return text


def count_zh(n: int) -> str:
    """Like int_zh, but 2 on its own is 两 (两件, 两天, 两点)."""
    return "两" if n == 2 else int_zh(n)


class _Fillers(dict):
    """Slot values drawn on first use from ``rng``; a template's slots are filled in order."""

    def __init__(self, rng: np.random.Generator):
        super().__init__()
        self.rng = rng

    def _pick(self, items):
        return items[int(self.rng.integers(len(items)))]

    def _digits(self, lo: int, hi: int) -> str:
        return digits_zh("".join(str(d) for d in self.rng.integers(0, 10, int(self.rng.integers(lo, hi + 1)))))

    def _amount(self) -> str:
        n = int(round(math.exp(self.rng.uniform(math.log(5), math.log(20000)))))
        style = self.rng.random()
        if style < 0.15:
            return f"{count_zh(n)}块钱"
        if style < 0.3:
            return f"{count_zh(n)}元{DIGITS[int(self.rng.integers(1, 10))]}角"
        return f"{count_zh(n)}元"

    def __missing__(self, key: str) -> str:
        r = self.rng
        makers: dict[str, Callable[[], str]] = {
            "surname": lambda: self._pick(SURNAMES),
            "title": lambda: self._pick(TITLES),
            "name": lambda: self._pick(SURNAMES) + self._pick(GIVEN_NAMES),
            "company": lambda: self._pick(COMPANIES),
            "product": lambda: self._pick(PRODUCTS),
            "courier": lambda: self._pick(COURIERS),
            "city": lambda: self._pick(CITIES),
            "district": lambda: self._pick(DISTRICTS),
            "road": lambda: self._pick(ROADS),
            "weekday": lambda: self._pick(WEEKDAYS),
            "house": lambda: int_zh(int(r.integers(1, 300))),
            "order": lambda: self._digits(8, 10),
            "agent": lambda: self._digits(3, 4),
            "phone4": lambda: self._digits(4, 4),
            "code6": lambda: self._digits(6, 6),
            "amount": self._amount,
            "amount2": self._amount,
            "count": lambda: count_zh(int(r.integers(1, 10))),
            "days": lambda: count_zh(int(r.integers(2, 16))),
            "hours": lambda: count_zh(int(r.choice([2, 4, 6, 12, 24, 48]))),
            "date": lambda: f"{int_zh(int(r.integers(1, 13)))}月{int_zh(int(r.integers(1, 29)))}号",
            "time": lambda: self._pick(DAY_PARTS) + count_zh(int(r.integers(1, 12))) + "点" + ("半" if r.random() < 0.3 else ""),
        }
        value = makers[key]()
        self[key] = value
        return value


def make_sentence(rng: np.random.Generator, topic: str, first: bool = False, last: bool = False) -> tuple[str, str]:
    """One utterance in Chinese characters, a template filled in, and the template's id (``"order/3"``).

    The first clip of a call is a greeting and the last a closing more often
    than not; the others come from ``topic``.
    """
    u = rng.random()
    kind = "greeting" if first and u < 0.6 else "closing" if last and u < 0.6 else topic
    pool = TEMPLATES[kind]
    index = int(rng.integers(len(pool)))
    template = pool[index]
    opener = OPENERS[int(rng.integers(len(OPENERS)))] if kind == topic and not template.startswith("好的") else ""
    return (opener + template).format_map(_Fillers(rng)), f"{kind}/{index}"
