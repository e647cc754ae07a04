"""Synthetic Mandarin call-center speech: templates, espeak-ng voices, telephone channel, noise.

Debian's espeak-ng cannot read Han characters with ``-v cmn``, so each label is
converted to tone-numbered pinyin (``nin2 hao3 , qing3 wen4 .``) and spoken by
``-v cmn-latn-pinyin+VARIANT``. Labels contain Chinese characters only: every
number is written the way it is spoken (order number 三五七二零八一六, amount
三百二十八元, date 三月十五号), so label and audio agree character for character.

The corpus is a set of calls. One call is one speaker (a fixed voice variant,
speed and pitch) on one channel at one noise level, saying up to
``clips_per_call`` utterances on one topic. Per clip::

    label --pypinyin--> pinyin --espeak-ng--> 22.05 kHz --sox--> 16 kHz wideband
                                                            or 300-3400 Hz band at 8 kHz
          --numpy--> silence padding, level, white/pink noise at snr_db
          (telephone: 8-bit mu-law companding) --> PCM-16 WAV

Output, written atomically (a hidden temporary folder, renamed when complete)::

    <out_dir>/<batch_id>/manifest.jsonl   {"id", "audio", "text", "speaker", "call_id", "channel", "snr_db"}
    <out_dir>/<batch_id>/audio/<id>.wav
    <out_dir>/<batch_id>/synth.json       options and the speakers' voice settings

The same options give byte-identical files on the same machine (espeak-ng, sox
and numpy versions fixed): every random draw comes from a generator seeded by
``(seed, kind, index)``, never from thread order.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager

import numpy as np
import soundfile as sf
from pypinyin import Style, lazy_pinyin

from zhasr.manifest import atomic_write_json, atomic_write_jsonl
from zhasr.progress import progress_bar

ESPEAK_VOICE = "cmn-latn-pinyin"  # Mandarin voice that reads tone-numbered pinyin
VOICE_VARIANTS = ("f1", "f2", "f3", "f4", "m1", "m3", "klatt2")  # espeak-ng variants, cycled over speakers
TOOLS = {"espeak-ng": "espeak-ng", "sox": "sox"}  # binary -> Debian/Ubuntu package that provides it


@dataclass(frozen=True)
class SynthOptions:
    n_clips: int = 60  # utterances to synthesize
    n_speakers: int = 12  # distinct voices (variant + speed + pitch); speaker i uses VOICE_VARIANTS[i % 7]
    seed: int = 0  # same seed and options, same bytes
    telephone_fraction: float = 0.5  # share of calls passed through the 8 kHz telephone band
    snr_db_choices: tuple[float, ...] = (30.0, 20.0, 15.0)  # dB, speech-to-noise power; one drawn per call
    noise_colors: tuple[str, ...] = ("white", "pink")  # noise spectra; one drawn per call
    clips_per_call: int = 4  # utterances per call at most (at least n_speakers calls are made)
    speed_wpm: tuple[int, int] = (180, 260)  # espeak-ng -s range per speaker; 180 ~ 3.4, 260 ~ 5.2 Han chars per second
    pitch: tuple[int, int] = (25, 75)  # espeak-ng -p range per speaker (0-99, 50 is the voice's default)
    level_dbfs: tuple[float, float] = (-30.0, -18.0)  # dBFS, RMS of active speech, drawn per clip
    pad_s: tuple[float, float] = (0.1, 0.5)  # seconds of leading and of trailing silence (noise only), drawn per side
    wideband_rate: int = 16000  # Hz of wideband clips
    telephone_rate: int = 8000  # Hz of telephone clips
    telephone_band_hz: tuple[int, int] = (300, 3400)  # Hz, sox sinc band-pass of the telephone channel
    mulaw: bool = True  # telephone clips go through 8-bit mu-law companding, as G.711 does
    workers: int = 2  # threads, each running one clip's espeak-ng and sox at a time

    def __post_init__(self) -> None:
        if self.n_clips < 1 or self.n_speakers < 1 or self.clips_per_call < 1:
            raise ValueError("n_clips, n_speakers and clips_per_call must be at least 1")
        if not 0.0 <= self.telephone_fraction <= 1.0:
            raise ValueError(f"telephone_fraction must be in [0, 1], got {self.telephone_fraction}")
        if not self.snr_db_choices:
            raise ValueError("snr_db_choices must name at least one SNR in dB")
        if unknown := set(self.noise_colors) - {"white", "pink"}:
            raise ValueError(f"noise_colors: unknown {sorted(unknown)}; use 'white' or 'pink'")


@dataclass(frozen=True)
class Speaker:
    id: str  # e.g. "syn0-spk03": seed and index
    variant: str  # espeak-ng voice variant, e.g. "f2"
    speed_wpm: int  # espeak-ng -s
    pitch: int  # espeak-ng -p


@dataclass(frozen=True)
class Call:
    id: str  # e.g. "syn0-call0007"
    speaker: Speaker
    topic: str  # key of TEMPLATES
    channel: str  # "telephone" or "wideband"
    snr_db: float  # dB
    noise: str  # "white" or "pink"


class MissingToolError(RuntimeError):
    """A binary the generator runs is not on PATH; the message names its package."""


# ---------------------------------------------------------------------------------------------
# Text: templates, fillers, numbers written as spoken

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


_PAUSES = {"，": ",", "、": ",", "；": ",", "：": ",", "。": ".", "！": ".", "？": ".", ",": ",", ".": ".", "?": ".", "!": "."}


def to_pinyin(text: str) -> str:
    """Chinese text -> tone-numbered pinyin for ``espeak-ng -v cmn-latn-pinyin``.

    ``"您好，请问"`` -> ``"nin2 hao3 , qing3 wen4"``: tones 1-4, neutral tone 5,
    ü as v; punctuation becomes a pause (``,`` or ``.``). espeak-ng applies
    third-tone sandhi itself. Anything else that is not Han (digits, Latin)
    raises ValueError: labels write numbers in characters.
    """
    out = []
    for token in lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True, errors=lambda s: list(s)):
        if token in _PAUSES:
            out.append(_PAUSES[token])
        elif token.isspace():
            continue
        elif token[-1] in "12345" and token[:-1].isascii() and token[:-1].isalpha():
            out.append(token)
        else:
            raise ValueError(f"to_pinyin: {token!r} in {text!r} is neither Han nor punctuation")
    return " ".join(out)


# ---------------------------------------------------------------------------------------------
# Audio: voice, channel, noise


def check_tools() -> None:
    """Raise MissingToolError naming the binary and its apt package if espeak-ng or sox is missing."""
    for binary, package in TOOLS.items():
        if shutil.which(binary) is None:
            raise MissingToolError(
                f"{binary} not found on PATH; the synthetic corpus needs it: install it with "
                f"`apt-get install {package}` (Debian/Ubuntu package {package!r})")


def _run(cmd: list[str], stdin: bytes | None, what: str) -> bytes:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"{what}: {cmd[0]} failed (exit {proc.returncode}): {err or 'no output'}")
    return proc.stdout


def speak(pinyin: str, speaker: Speaker) -> bytes:
    """WAV bytes (PCM-16, 22.05 kHz mono) of ``pinyin`` spoken by ``speaker``."""
    cmd = ["espeak-ng", "-v", f"{ESPEAK_VOICE}+{speaker.variant}", "-s", str(speaker.speed_wpm),
           "-p", str(speaker.pitch), "--stdout", pinyin]
    return _run(cmd, None, f"speaking {pinyin!r}")


def apply_channel(wav: bytes, channel: str, options: SynthOptions) -> tuple[np.ndarray, int]:
    """sox: wideband resampled to ``wideband_rate``; telephone band-passed and resampled to ``telephone_rate``.

    Returns ``((n_samples,) float32, rate in Hz)``. ``-R`` makes sox repeatable,
    float output means no dither.
    """
    if channel == "telephone":
        lo, hi = options.telephone_band_hz
        rate, effects = options.telephone_rate, ["sinc", f"{lo}-{hi}", "rate", "-v", str(options.telephone_rate)]
    else:
        rate, effects = options.wideband_rate, ["rate", "-v", str(options.wideband_rate)]
    cmd = ["sox", "-R", "-D", "-V1", "-t", "wav", "-", "-t", "f32", "-c", "1", "-"] + effects
    raw = _run(cmd, wav, f"{channel} channel")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32), rate


def active_power(x: np.ndarray, rate: int, floor_db: float = 30.0) -> float:
    """Mean power of the 20 ms frames within ``floor_db`` dB of the loudest frame (speech, not pauses)."""
    frame = max(1, rate // 50)
    n = len(x) // frame
    if n == 0:
        return float(np.mean(x**2)) if len(x) else 0.0
    energy = (x[: n * frame].reshape(n, frame) ** 2).mean(axis=1)
    return float(energy[energy >= energy.max() * 10 ** (-floor_db / 10)].mean())


def make_noise(rng: np.random.Generator, n: int, color: str) -> np.ndarray:
    """(n,) float64 noise of unit power: white, or pink (power spectrum ~ 1/f)."""
    white = rng.standard_normal(n)
    if color == "pink":
        spectrum = np.fft.rfft(white)
        spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
        spectrum[0] = 0.0
        white = np.fft.irfft(spectrum, n)
    return white / max(np.sqrt(np.mean(white**2)), 1e-12)


def mulaw(x: np.ndarray, mu: float = 255.0) -> np.ndarray:
    """8-bit mu-law compand and expand (G.711-like quantization noise), values in [-1, 1]."""
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    y = np.round(y * 127.0) / 127.0
    return np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu


def render(speech: np.ndarray, rate: int, call: Call, rng: np.random.Generator, options: SynthOptions) -> np.ndarray:
    """Pad with silence, set the speech level, add noise at ``call.snr_db`` dB, companding on telephone.

    A clip whose peak would pass 0.98 is scaled down as a whole instead of clipped.

    ``speech`` is (n,) float32 at ``rate`` Hz; returns (n + padding,) float64 in [-1, 1].
    The SNR is measured on active speech frames against noise over the whole clip;
    noise is added after the channel filter, so telephone noise spans 0-4 kHz.
    """
    lead, trail = (int(rng.uniform(*options.pad_s) * rate) for _ in range(2))
    x = np.concatenate([np.zeros(lead), speech.astype(np.float64), np.zeros(trail)])
    power = active_power(x, rate)
    level = 10 ** (rng.uniform(*options.level_dbfs) / 20)
    x *= level / math.sqrt(max(power, 1e-20))
    noise = make_noise(rng, len(x), call.noise) * level * 10 ** (-call.snr_db / 20)
    x += noise
    x *= min(1.0, 0.98 / max(float(np.abs(x).max()), 1e-12))  # no clipping; the SNR is unchanged
    if call.channel == "telephone" and options.mulaw:
        x = mulaw(x)
    return x


# ---------------------------------------------------------------------------------------------
# Corpus plan and batch writer


def _rng(seed: int, kind: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, kind, index]))


def plan_speakers(options: SynthOptions) -> list[Speaker]:
    """``n_speakers`` voices: variants cycled, speed and pitch drawn per speaker."""
    speakers = []
    for i in range(options.n_speakers):
        rng = _rng(options.seed, 1, i)
        speakers.append(Speaker(
            id=f"syn{options.seed}-spk{i:02d}", variant=VOICE_VARIANTS[i % len(VOICE_VARIANTS)],
            speed_wpm=int(rng.integers(options.speed_wpm[0], options.speed_wpm[1] + 1)),
            pitch=int(rng.integers(options.pitch[0], options.pitch[1] + 1)),
        ))
    return speakers


def plan_calls(options: SynthOptions) -> list[Call]:
    """At least one call per speaker (if there are enough clips); ``telephone_fraction`` of them telephone."""
    speakers = plan_speakers(options)
    n_calls = min(options.n_clips, max(options.n_speakers, math.ceil(options.n_clips / options.clips_per_call)))
    order = _rng(options.seed, 2, 0).permutation(n_calls)
    n_phone = round(options.telephone_fraction * n_calls)
    calls = []
    for j in range(n_calls):
        rng = _rng(options.seed, 3, j)
        calls.append(Call(
            id=f"syn{options.seed}-call{j:04d}", speaker=speakers[j % len(speakers)],
            topic=TOPICS[int(rng.integers(len(TOPICS)))],
            channel="telephone" if order[j] < n_phone else "wideband",
            snr_db=float(options.snr_db_choices[int(rng.integers(len(options.snr_db_choices)))]),
            noise=options.noise_colors[int(rng.integers(len(options.noise_colors)))],
        ))
    return calls


def _synthesize_clip(k: int, call: Call, first: bool, last: bool, clip_id: str, audio_dir: Path,
                     options: SynthOptions) -> dict[str, Any]:
    rng = _rng(options.seed, 4, k)
    text, template = make_sentence(rng, call.topic, first=first, last=last)
    speech, rate = apply_channel(speak(to_pinyin(text), call.speaker), call.channel, options)
    samples = render(speech, rate, call, rng, options)
    path = audio_dir / f"{clip_id}.wav"
    sf.write(path, samples, rate, format="WAV", subtype="PCM_16")
    return {"id": clip_id, "audio": f"audio/{path.name}", "text": text, "template": template,
            "speaker": call.speaker.id, "call_id": call.id, "channel": call.channel, "snr_db": call.snr_db}


def synthesize_batch(
    out_dir: Path, options: SynthOptions, batch_id: str,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write ``out_dir/<batch_id>/`` (manifest.jsonl, audio/, synth.json) and return that folder.

    ``progress(done, total)`` is called after each clip; without it a rich
    progress bar is shown. The batch is built in a hidden temporary folder under
    ``out_dir`` and renamed into place when complete: an interrupted run leaves
    no ``<batch_id>`` folder. An existing batch is never overwritten
    (FileExistsError).
    """
    check_tools()
    out_dir = Path(out_dir)
    target = out_dir / batch_id
    if target.exists():
        raise FileExistsError(f"{target}: batch already exists; remove it or choose another batch id")
    calls = plan_calls(options)
    # Clip k belongs to call k * n_calls // n_clips: contiguous, near-equal runs.
    owner = [k * len(calls) // options.n_clips for k in range(options.n_clips)]
    jobs = [(k, calls[j], k == 0 or owner[k - 1] != j, k == options.n_clips - 1 or owner[k + 1] != j,
             f"{batch_id}-{k:05d}") for k, j in enumerate(owner)]
    out_dir.mkdir(parents=True, exist_ok=True)
    # Two levels deep, so a `*/manifest.jsonl` glob over out_dir never sees a half batch.
    staging = Path(tempfile.mkdtemp(prefix=f".{batch_id}.partial-", dir=out_dir))
    try:
        work = staging / batch_id
        audio_dir = work / "audio"
        audio_dir.mkdir(parents=True)
        rows = []
        with _progress(progress, f"synth {batch_id}") as report, ThreadPoolExecutor(max_workers=options.workers) as pool:
            futures = [pool.submit(_synthesize_clip, *job, audio_dir, options) for job in jobs]
            try:
                for done, future in enumerate(futures, start=1):
                    rows.append(future.result())
                    report(done, len(futures))
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        atomic_write_json(work / "synth.json", {
            "options": asdict(options),
            "speakers": [asdict(s) for s in plan_speakers(options)],
            "voice": ESPEAK_VOICE,
        })
        atomic_write_jsonl(work / "manifest.jsonl", rows)
        work.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _progress(progress: Callable[[int, int], None] | None, description: str) -> ContextManager[Callable[[int, int], None]]:
    return nullcontext(progress) if progress is not None else progress_bar(description)
