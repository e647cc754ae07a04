"""Personal data found and redacted in call text, numbers as digits, a split call's figures, diarized_json,
and job retention."""

from __future__ import annotations

import dataclasses
import io
import time

import numpy as np
import pytest
import soundfile as sf
from openai.types.audio import TranscriptionDiarized

from zhasr.calltext.checks import id_check_char, luhn_ok, valid_id_card, valid_phone
from zhasr.calltext.itn import numbers_to_digits
from zhasr.calltext.pii import KINDS, find_pii, parse_kinds, redact
from zhasr.data.synth.personal import NAMING_WORDS, personal_set
from zhasr.evaluation.redaction_recall import score
from zhasr.serve.jobs import JobStore
from zhasr.transcribe.figures import call_figures
from zhasr.transcribe.media import CallAudio
from zhasr.transcribe.records import Segment, Transcription, Word
from zhasr.transcribe.redaction import MUTE_PAD_S, finish_text, mute, muted_wav
from zhasr.transcribe.writers import diarized, verbose


def test_generated_numbers_in_every_written_form_are_found_and_orders_amounts_dates_are_not():
    # a seed the rules were not written against; 200 a kind, 300 sentences of other numbers
    rows = personal_set(seed=99, per_kind=200, others=300)
    for kind, s in score(rows, [r.text for r in rows], decoded=False).kinds.items():
        assert s.recall >= 0.99 and s.precision >= 0.95, (kind, s)


def test_even_and_odd_frames_split_every_kinds_sentences_and_all_frames_draw_as_before():
    even, odd = (personal_set(seed=5, per_kind=40, others=40, frames=f) for f in ("even", "odd"))
    assert {r.frame % 2 for r in even} == {0} and {r.frame % 2 for r in odd} == {1}
    assert {r.kind for r in even} == {r.kind for r in odd} == {*KINDS, ""}
    every = personal_set(seed=778, per_kind=200, others=300)  # the set docs/numbers-measured.md reports
    assert {r.frame % 2 for r in every} == {0, 1}
    assert (every[0].text, every[-1].text) == ("有问题请回拨幺三八五零四二七二七幺，谢谢。", "手机号后四位是六六零二。")


def test_any_naming_word_is_said_in_the_frames_and_the_rules_find_each():
    framed = personal_set(seed=5, per_kind=100, others=0, frames="even")
    renamed = personal_set(seed=5, per_kind=100, others=0, frames="even", naming="any")
    for kind, words in NAMING_WORDS.items():
        said = " ".join(r.text for r in renamed if r.kind == kind)
        assert all(w in said for w in words), kind
    assert not any("安全码" in r.text or "动态密码" in r.text for r in framed)  # only odd frames name them
    assert not any("[" in r.said + r.text for r in framed + renamed)  # a frame's noun mark is never said
    # drawn as the registered detectors' sets were (a settings hash names a set, so the draw must not move)
    assert [r.text for r in renamed if r.kind == "code"][:2] == ["短信里的校验码是五一二对吗？", "验证码6034，麻烦帮我看一下。"]
    for kind, s in score(renamed, [r.text for r in renamed], decoded=False).kinds.items():
        assert s.recall == 1.0 and s.precision == 1.0, (kind, s)
    assert {len(r.value) for r in renamed if "安全码" in r.text} == {3}


HELD_OUT = [  # phrased unlike the generator's templates
    ("phone", "那你记一下我老婆的手机，139 0571 2288，白天都能打通"),
    ("phone", "麻烦回个电话到零二一六二三四五六七八"),
    ("phone", "对对对，就是幺八六幺二三四八八九九，这个是我本人的"),
    ("id_card", f"身份证是110105194912310021吧我看一下，不对，是{'11010519491231002' + id_check_char('11010519491231002')}"),
    ("bank_card", "工资卡是招商银行的，卡号6225 8801 2345 6783"),
    ("code", "他让我把收到的那个六位数的验证码念给他，我就念了三九四八二七"),
    ("email", "合同发我邮箱 li.ming_2020@163.com 就可以了"),
    ("", "我这个单子是上个月十五号下的，一共花了两千三百块"),
    ("", "订单编号是二零二六一二零四一五三八二零零九"),
    ("", "您的工单号5201314已经提交，预计三个工作日处理"),
]


@pytest.mark.parametrize("kind,text", HELD_OUT)
def test_held_out_sentences(kind, text):
    kinds = {f.kind for f in find_pii(text)}
    assert kinds == ({kind} if kind else set()), (text, kinds)


def test_number_masks_any_other_long_digit_run_only_when_named():
    text = "订单号是187368839386872，手机尾号五六七八，我的手机号码是要三八一二三四五六七八"
    assert [f.kind for f in find_pii(text, parse_kinds("all"))] == ["phone"]
    assert [(f.kind, text[f.start:f.end]) for f in find_pii(text, parse_kinds("phone,number"))] == [
        ("number", "187368839386872"), ("phone", "要三八一二三四五六七八")]
    with pytest.raises(ValueError, match="unknown kind 'passport'; expected all, none or some of phone"):
        parse_kinds("phone,passport")


GARBLED = [  # numbers a recognizer heard as words after a word naming them: (kind, text, the span)
    ("phone", "行我的手机号码要把期思吴了三六三五七五要对吧", "要把期思吴了三六三五七五要"),
    ("bank_card", "卡号六二以而把吴巴起一三四五六七九三二一零好的", "六二以而把吴巴起一三四五六七九三二一零"),
    ("code", "验证马是五乳一七再五分钟内", "五乳一七"),  # "是" after the naming word is not 四
    ("email", "我的油箱是张小明八八艾特一六三点康谢谢", "张小明八八艾特一六三点康"),
]


@pytest.mark.parametrize("kind,text,span", GARBLED)
def test_a_stretch_that_sounds_like_digits_after_its_naming_word_is_taken_as_that_kind(kind, text, span):
    assert [(f.kind, text[f.start:f.end]) for f in find_pii(text)] == [(kind, span)]


@pytest.mark.parametrize("text,span", [  # the demo's candidate on spoken addresses: only its ".com" is heard
    ("发表请发到小文柏林酒达就要六三点康古谢谢", "小文柏林酒达就要六三点康古"),  # after 发到, to its "点康古"
    ("我的牛香是将牛餐6700爱的牛餐点康湖", "我的牛香是将牛餐6700爱的牛餐点康湖"),  # 邮箱 misheard: the clause
    ("电子又想到电话路已是三奶茶要三六点坑墓拎起一下", "到电话路已是三奶茶要三六点坑墓"),  # an address, not a phone
])
def test_an_address_is_found_by_its_com_heard_in_characters(text, span):
    assert [(f.kind, text[f.start:f.end]) for f in find_pii(text)] == [("email", span)]


@pytest.mark.parametrize("text,span", [  # a number-trained model on spoken addresses: a spaced domain, "com"
    ("电子邮箱ch eng j ia oh aw 65 16 3 com您记一下", "ch eng j ia oh aw 65 16 3 com"),  # 28 letters, spaced
    ("到我的邮箱m og x ia oming八六八18 8 comm og ux ing", "m og x ia oming八六八18 8 com"),  # "com 就行" run on
    ("发邀请发到马近86 88艾特13 9 com谢谢发", "马近86 88艾特13 9 com"),  # after 发到
    ("发钥琴八道位累七五艾特126点com", "发钥琴八道位累七五艾特126点com"),  # 发到 misheard: the clause
])
def test_an_address_is_found_by_its_mail_domain_and_latin_com(text, span):
    assert [(f.kind, text[f.start:f.end]) for f in find_pii(text)] == [("email", span)]


@pytest.mark.parametrize("text", [
    "明天上午十点看一下", "我八点康复科有个预约", "我知道了下午三点看母婴店", "订单号码是123点康古",
])
def test_a_time_before_a_word_that_sounds_like_com_is_not_an_address(text):
    assert find_pii(text) == []


@pytest.mark.parametrize("text", [
    "我稍后给您回电话，请保持手机畅通",  # naming words, no number after them
    "您的验证码已经发送了，请注意查收",
    "手机尾号是五六七八的那个订单",  # a word saying "not personal data" in between
    "手机号透四位是1,9400",  # 后四位 misheard: "four digits" counts them, it is not a digit of the number
    "邮箱我回头再发给您",  # too short to be an address
    "发到公司大概下午三点左右吧",  # sent to, but no Latin "com" ends it
])
def test_naming_words_without_a_number_after_them_take_nothing(text):
    assert find_pii(text) == []


@pytest.mark.parametrize("kind,text,span", [
    ("email", "我的邮箱是zhangsan123点com谢谢", "zhangsan123点com"),  # the whole top-level domain
    ("email", "我的邮箱地址是zhangsan点com", "zhangsan点com"),  # the longest naming word, not 邮箱 + "地址…"
    ("code", "验证码是九九八七六五四三二", "九九八七六五四三二"),  # longer than a code: masked whole, not cut
    ("phone", "我家电话是87654321", "87654321"),  # a local landline without its area code
    # a last group of one "一" before a word: the card's last digit, as with it the number passes Luhn
    ("bank_card", "这张卡六二三九，四一八零，二零四零，一三四三，一是我本人的", "六二三九，四一八零，二零四零，一三四三，一"),
    ("bank_card", "卡号6239418020401343，一百块", "6239418020401343"),  # ... not a value's
])
def test_a_span_covers_the_whole_of_what_it_names(kind, text, span):
    assert [(f.kind, text[f.start:f.end]) for f in find_pii(text)] == [(kind, span)]


def test_a_phone_word_is_not_heard_as_a_code_word():
    """"手机号码" sounds like 激活码 with one syllable misheard: a number after it a digit or two short of a
    phone number is a garbled phone number, not a code."""
    assert [f.kind for f in find_pii("跟您核对一下手机号码是六四八八三五九二对吗")] == ["phone"]
    assert [f.kind for f in find_pii("您的激活码是六四八八三五")] == ["code"]


@pytest.mark.parametrize("kind,text,span", [  # as a model trained on calls with numbers writes them
    ("id_card", "他说证号码32841219870967630对吧", "32841219870967630"),  # 身份 misheard, a digit lost
    ("id_card", "好的53863319506187151这是我的身份证", "53863319506187151"),  # named: not a bank card by Luhn
    ("phone", "我换号了新号码是1875247043", "1875247043"),  # 号码 names a phone number, a digit lost
    ("id_card", "我身份证号码是34254219750525717", "34254219750525717"),  # ... but not after 身份证
    ("code", "卡背面的三拳码是953", "953"),  # 安全码 misheard but its end
    ("phone", "您好我的点号是1371872690麻烦您快联系我", "1371872690"),  # 电话 misheard, a mobile number a digit short
    ("email", "我的邮箱是jianyong367 139 com", "jianyong367 139 com"),  # no "点" heard
    ("email", "发票请发到suyen0625 163 com谢谢", "suyen0625 163 com"),  # no naming word: its shape
    ("email", "发票请发到白华二九六零那是163点com谢谢", "白华二九六零那是163点com"),  # sent to, ending in "com"
])
def test_what_a_recognizer_trained_on_numbers_writes_is_found(kind, text, span):
    assert [(f.kind, text[f.start:f.end]) for f in find_pii(text)] == [(kind, span)]


@pytest.mark.parametrize("text", [
    "邮政编码是100101", "商品条码是690123456", "订单号码是12345678", "这个起码是1000块", "您的尺码是175",
    "发票号码是12345678", "您的会员号码是12345678", "快递号码是SF1234567890", "营业执照证号是91310000123456789X",
    "请登录www.baidu.com查看详情", "您也可以登录taobao.com或者tmall.com下单", "您的是iPhone 15 CN版吗",
    "文件发到官网了就在jd点com上", "发到" + "好" * 25 + "company的资料", "价码是299", "条形码是6901234567892，您扫一下",
    "这个订单的号码是202405180012", "快递的号码是75312345678901", "这个号码是95588，是工行的客服", "客服电话4008208820",
    "请登录 www 163 com 查询", "发票号码是不是开给公司的抬头，12345678",
    "好的4343-17296-11188-1899",  # groups of a longer number are not a mobile number a digit short
    "这场卡6852 6641 6084 7503 424是我本人的",  # no naming word heard, no Luhn, not UnionPay's 62
    "订单号是6252664160847503124", "运单号35835619221504117",  # shaped like a card, named an order
])
def test_numbers_and_names_whose_words_look_like_naming_words_are_not_personal(text):
    assert find_pii(text) == []


@pytest.mark.parametrize("kind,text,span", [
    ("code", "银行卡密码123456", "123456"),  # a code word right after a card word still names a code
    ("phone", "我刚好正好在家，一三八一二三四五六七八是我电话", "一三八一二三四五六七八"),  # 正好 is not 证号
    ("email", "您的邮箱是 zhang san 163 com 对吧", "zhang san 163 com"),  # the whole name, not "san 163 com"
])
def test_words_next_to_written_naming_words_keep_their_kind(kind, text, span):
    assert [(f.kind, text[f.start:f.end]) for f in find_pii(text)] == [(kind, span)]


@pytest.mark.parametrize("text,span", [  # a code word's start misheard: its last two syllables name a run of digits
    ("我收到的印振马48667", "48667"), ("卡背面的单权码4115", "4115"), ("短信里的条件马士七零八八五一贵马", "七零八八五一"),
    ("我收到的印振马是无务就", None),  # ... not a stretch that only sounds like digits
    ("全码都有，三十八到四十二", None), ("他全马跑了四小时", None),
])
def test_a_code_word_heard_by_its_end_names_a_run_of_digits(text, span):
    assert [(f.kind, text[f.start:f.end]) for f in find_pii(text)] == ([("code", span)] if span else [])


@pytest.mark.parametrize("kind,text,span", [
    # a digit misheard breaks Luhn: the card keeps UnionPay's 62 and its length
    ("bank_card", "这场卡6252 6641 6084 7503 424是我本人的", "6252 6641 6084 7503 424"),
    # misheard digits break the check character and the date: a province code and a year of birth stay
    ("id_card", "好的，35835619221504117，这是我的神神神", "35835619221504117"),
    ("id_card", "我的身份是最高是37706219920218127X", "37706219920218127X"),
    ("id_card", "好的4343-17196-11188-1999", "4343-17196-11188-1999"),  # whole, not a phone number inside
])
def test_a_card_number_with_a_digit_misheard_keeps_its_shape(kind, text, span):
    assert [(f.kind, text[f.start:f.end]) for f in find_pii(text)] == [(kind, span)]


@pytest.mark.parametrize("text,found", [  # the demo's candidate on card numbers: no phone number in their middle
    ("我身份诚号是1328-1979-1979-151-181", []), ("636418-077-1900-1900-64我", []),
    ("我的电话1328-1979-2321-286-3", [("phone", "1328-1979-2321")]),  # ... unless a phone word names it
    ("打13812345678，13987654321都行", [("phone", "13812345678"), ("phone", "13987654321")]),  # both taken
])
def test_a_run_longer_than_a_phone_number_is_not_cut_for_one_unnamed(text, found):
    assert [(f.kind, text[f.start:f.end]) for f in find_pii(text)] == found


@pytest.mark.parametrize("text,redacted", [
    ("我要13812345678的通话记录", "我要[PHONE]的通话记录"),  # "要" before written digits ends its word
    ("我要6225880123456783的流水", "我要[BANK_CARD]的流水"),
    ("收货人张三13812345678", "收货人张三[PHONE]"),  # so does a name's numeral
    ("我的手机是138。1234。5678", "我的手机是[PHONE]"),  # a pause heard inside the number
    ("我的手机号是幺三八。幺二三四五六七八。", "我的手机号是[PHONE]。"),
    ("我手机是１３８１２３４５６７８", "我手机是[PHONE]"),  # full-width digits
    ("我手机号一三八两二三四五六七八", "我手机号[PHONE]"),  # 两 for a 2 inside a number
    ("快递寄到北京，收件人110105199003071239", "快递寄到北京，收件人[ID_CARD]"),  # passes every check of its kind
    ("客服电话是400-812-3456", "客服电话是400-812-3456"), ("热线电话4006-888-888", "热线电话4006-888-888"),  # hotlines
    ("订单上留的是13812345678", "订单上留的是13812345678"),  # a mobile's shape after 订单: as before
    ("我们两个人三点到", "我们两个人三点到"),
])
def test_numbers_as_callers_say_them_and_recognizers_write_them(text, redacted):
    assert redact(text)[0] == redacted


def test_checksums_and_prefixes():
    assert valid_id_card("11010519491231002X") and not valid_id_card("110105194912310021")
    assert not valid_id_card("11010520991231002" + id_check_char("11010520991231002"))  # born in the future
    assert luhn_ok("6225880123456783") and not luhn_ok("6225880123456787")
    assert valid_phone("13812345678") and valid_phone("8613812345678") and not valid_phone("12012345678")
    with pytest.raises(ValueError, match="unknown kind 'passport'"):
        find_pii("x", ["passport"])


@pytest.mark.parametrize("said,written", [
    ("退款金额是三百二十八元", "退款金额是328元"), ("二零二六年三月五号", "2026年3月5号"),
    ("下午三点十五分到", "下午3:15到"), ("百分之二十", "20%"), ("订单号三五七二零八一六", "订单号35720816"),
    ("十二点五元", "12.5元"), ("两百块钱", "200块钱"), ("晚上八点", "晚上8点"),
    ("我等一下再打", "我等一下再打"), ("统一处理", "统一处理"), ("一心一意", "一心一意"), ("星期一", "星期一"),
    ("我想问一个问题", "我想问一个问题"), ("一五一十地说", "一五一十地说"), ("一块儿去", "一块儿去"),
    ("几十万元", "几十万元"), ("数十个", "数十个"),  # "dozens of": no value to write
    ("单价十二点五十元", "单价十二点五十元"),  # a price, not a clock time
    ("我们下午两点十分一起过来", "我们下午2:10一起过来"), ("八点三十分一定到", "8:30一定到"),
])
def test_numbers_to_digits(said, written):
    assert numbers_to_digits(said) == written


def _segment(i, start, end, text, channel=0, speaker="agent", words=()):
    return Segment(i, start, end, text, channel, speaker, -0.2, 0.01, 1.0, words=tuple(words))


def _transcription(segments, channels="split", duration=20.0):
    return Transcription(" ".join(s.text for s in segments), tuple(segments), duration, "zh", "m", "ct2", channels)


def test_finish_text_redacts_across_segments_places_spans_and_writes_digits_between():
    said = "我的手机是幺三八一二三四"
    words = [Word(1.0 + 0.25 * k, 1.2 + 0.25 * k, ch) for k, ch in enumerate(said)]
    segments = [_segment(0, 1.0, 4.0, said, words=words),
                _segment(1, 4.5, 6.0, "五六七八，三百二十八元"),  # the number goes on after a pause
                _segment(2, 5.0, 7.0, "好的", channel=1, speaker="customer")]
    result = finish_text(_transcription(segments), KINDS, itn=True)
    a, b, c = result.segments
    assert a.text == "我的手机是[PHONE]" and b.text == "[PHONE]，328元" and c.text == "好的"
    assert [r.kind for r in result.redactions] == ["phone", "phone"]
    first, second = result.redactions
    assert result.text[first.text_start:first.text_end] == "[PHONE]" == result.text[second.text_start:second.text_end]
    assert (first.audio_start, first.audio_end) == (words[5].start, words[-1].end)  # from the word times
    assert second.audio_start == 4.5 and second.audio_end < 6.0  # by characters: no words
    assert [w.word for w in a.words][-1] == "[PHONE]" and len(a.words) == 6
    assert not any(ch.isdigit() for ch in "".join(s.text for s in result.segments).replace("328", ""))
    body = verbose(result, words=True)
    assert body["redactions"][0]["kind"] == "phone" and "幺三八" not in str(body)


def test_what_a_number_trained_model_heard_is_taken_out_of_the_text_by_time():
    garbled = "请记一下要三六七三三九五要求要这是我的联系方式"  # a phone number the text alone does not show
    words = [Word(0.5 * k, 0.5 * k + 0.45, ch) for k, ch in enumerate(garbled)]  # 要三六…要 at 2.0-7.45 s
    text = _transcription([_segment(0, 0.0, 11.5, garbled, words=words), _segment(1, 0.0, 4.6, "好的", channel=1)])
    assert finish_text(text, KINDS).redactions == ()
    heard_text = "请记一下13673395191这是我的联系方式"
    heard_words = [Word(0.0, 1.9, "请记一下"), Word(2.3, 7.2, "13673395191"), Word(7.5, 11.5, "这是我的联系方式")]
    heard = _transcription([_segment(0, 0.0, 11.5, heard_text, words=heard_words)])
    result = finish_text(text, KINDS, heard=heard)
    assert [s.text for s in result.segments] == ["请记一下[PHONE]这是我的联系方式", "好的"]  # its channel only
    assert [(r.kind, r.audio_start, r.audio_end) for r in result.redactions] == [("phone", words[4].start, words[14].end)]
    # what the text shows itself is kept, and a span both found is one
    both = _transcription([_segment(0, 0.0, 11.5, heard_text, words=heard_words)])
    assert [s.text for s in finish_text(both, KINDS, heard=heard).segments] == ["请记一下[PHONE]这是我的联系方式"]


def test_a_span_is_placed_by_word_times_when_the_words_spell_the_text_but_its_spaces():
    words = [Word(0.0, 0.5, "手机号"), Word(0.6, 1.0, "138"), Word(1.1, 2.0, "1234"), Word(2.1, 3.0, "5678"),
             Word(3.1, 3.5, "谢谢")]
    result = finish_text(_transcription([_segment(0, 0.0, 9.0, "手机号138 1234 5678谢谢", words=words)]), KINDS)
    assert [(r.audio_start, r.audio_end) for r in result.redactions] == [(0.6, 3.0)]
    # and its words stay, the span's one word, its placeholder
    assert result.segments[0].words == (words[0], Word(0.6, 3.0, "[PHONE]"), words[-1])


def test_finish_text_without_kinds_or_itn_is_the_transcription_itself():
    t = _transcription([_segment(0, 0, 1, "幺三八一二三四五六七八")])
    assert finish_text(t) is t


def test_mute_silences_every_channel_in_the_ranges_only():
    rate = 16000
    samples = np.full((2, 10 * rate), 0.5, dtype=np.float32)
    t = finish_text(_transcription([_segment(0, 2.0, 5.0, "卡号6225880123456783")]), ["bank_card"])
    muted = mute(samples, rate, t.redactions, pad_s=0.1)
    r = t.redactions[0]
    assert not muted[:, int((r.audio_start - 0.1) * rate):int((r.audio_end + 0.1) * rate)].any()
    assert muted[:, :int(1.5 * rate)].all() and muted[:, int(5.5 * rate):].all()


def test_muted_audio_comes_back_at_the_calls_own_rate_with_exact_silence():
    rate = 16000  # what the engine decodes at; the call came at 8 kHz
    call = CallAudio(np.full((2, 10 * rate), 0.5, dtype=np.float32), source_rate=8000, codec="pcm_mulaw")
    t = finish_text(_transcription([_segment(0, 2.0, 5.0, "卡号6225880123456783")]), ["bank_card"])
    muted, out_rate = sf.read(io.BytesIO(muted_wav(call, t.redactions)), dtype="float32", always_2d=True)
    r = t.redactions[0]
    assert out_rate == 8000 and muted.shape == (10 * 8000, 2)
    assert not muted[int((r.audio_start - MUTE_PAD_S) * 8000):int((r.audio_end + MUTE_PAD_S) * 8000)].any()
    assert np.allclose(muted[8000:int(1.5 * 8000)], 0.5, atol=1e-3) and np.allclose(muted[6 * 8000:9 * 8000], 0.5, atol=1e-3)


def test_call_figures_talk_silence_overlap_turns_rate():
    segments = [_segment(0, 0.0, 4.0, "您好请问有什么可以帮您"), _segment(1, 3.5, 9.5, "我的快递三天没到了怎么回事", 1, "customer"),
                _segment(2, 10.0, 12.0, "我再说一下单号", 1, "customer"), _segment(3, 13.0, 14.0, "好的", 0)]
    f = call_figures(_transcription(segments, duration=20.0))
    agent, customer = f.speakers
    assert (agent.speaker, agent.talk_s, agent.turns) == ("agent", 5.0, 2)
    assert (customer.talk_s, customer.turns, customer.longest_turn_s) == (8.0, 1, 8.5)
    assert f.overlap_s == 0.5 and f.turns == 3 and f.silence_s == pytest.approx(20 - 12.5)
    assert customer.chars_per_min == pytest.approx(60 * 20 / 8.0)
    assert "call" in verbose(_transcription(segments)) and "call" not in verbose(_transcription(segments, "mix"))


def test_diarized_json_is_what_the_openai_client_reads():
    t = _transcription([_segment(0, 0.0, 2.0, "您好"), _segment(1, 2.5, 4.0, "你好", 1, "customer")])
    parsed = TranscriptionDiarized.model_validate(diarized(t))
    assert [(s.speaker, s.text) for s in parsed.segments] == [("agent", "您好"), ("customer", "你好")]


def test_purge_deletes_old_finished_jobs_their_audio_and_their_bytes(tmp_path):
    store = JobStore(tmp_path)
    old, new, queued = (store.submit("k", b"RIFFaudio", {}, 1.0) for _ in range(3))
    for job in (old, new):
        store.claim()
        store.keep_redacted_audio(job.id, b"RIFF muted")
        store.complete(job.id, {"text": f"secret-{job.id}"}, "1")
    store._db.execute("UPDATE jobs SET finished = ? WHERE id = ?", (time.time() - 40 * 86400, old.id))
    assert store.purge(time.time() - 30 * 86400) == 1
    assert store.get(old.id) is None and store.get(new.id).state == "done" and store.get(queued.id).state == "queued"
    assert not store.redacted_audio(old.id).exists() and store.redacted_audio(new.id).exists()
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("jobs.sqlite*"))
    assert f"secret-{old.id}".encode() not in raw and f"secret-{new.id}".encode() in raw


def test_redaction_of_removed_pieces_too():
    from zhasr.transcribe.records import Removed

    t = dataclasses.replace(_transcription([_segment(0, 0, 1, "好的")]),
                            removed=(Removed(3.0, 4.0, 0, "hallucination", "验证码是六八二九四一"),))
    assert finish_text(t, ["code"]).removed[0].text == "验证码是[CODE]"


def test_the_cli_writes_the_redacted_transcript_and_the_muted_audio(project, tiny_model_dir, generated_call, capsys):
    import json

    import soundfile as sf

    from cli.main import main

    call, _ = generated_call
    out = project / "out"
    assert main(["transcribe", str(call), "--model", str(tiny_model_dir), "--channels", "split", "--redact", "all",
                 "--itn", "--format", "verbose_json", "--out", str(out), "--redacted-audio"]) == 0
    (summary,) = json.loads(capsys.readouterr().out)
    body = json.loads((out / f"{call.stem}.json").read_text(encoding="utf-8"))
    assert summary["out"] == str(out / f"{call.stem}.json") and "call" in body  # a split call's figures
    muted = sf.info(out / f"{call.stem}.redacted.wav")
    assert (muted.channels, muted.samplerate) == (2, 8000) and abs(muted.duration - body["duration"]) < 0.01
    assert main(["transcribe", str(call), "--model", str(tiny_model_dir), "--redacted-audio"]) == 2  # needs --out
    assert "--redacted-audio: needs --out" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse names the kind
        main(["transcribe", str(call), "--redact", "passport"])
