"""The bundled place table and the place finder of the weather skill."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from plugins.weather.places import DATA, PlaceIndex, default_index, read_table
from plugins.weather.understand import WEATHER_WORDS

DATA_DIR = Path(DATA).parent


def load_build_script():
    spec = importlib.util.spec_from_file_location("build_places", DATA_DIR / "build_places.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def index() -> PlaceIndex:
    return default_index()


def test_table_covers_every_level(index):
    places = list(index.places.values())
    assert len(places) > 3000
    provinces = [p for p in places if p.level == "province"]
    assert len(provinces) == 34  # 23 provinces (台湾 included), 5 regions, 4 municipalities, 2 SARs
    assert sum(p.level == "city" for p in places) > 330
    assert sum(p.level == "district" for p in places) > 2800


def test_table_is_consistent(index):
    for place in index.places.values():
        assert 3 <= place.lat <= 54 and 73 <= place.lon <= 136, place
        assert len(place.short) >= 2, place
        assert place.level in ("province", "city", "district")
        if place.level == "province":
            assert place.parent == ""
        else:
            assert place.parent in index.places, place
        assert place.flags in ("", "q", "Q")


def test_data_is_credited_and_licensed():
    licence = (DATA_DIR / "LICENSE-cpca.txt").read_text(encoding="utf-8")
    assert "MIT License" in licence and "QinYuan Du" in licence
    head = DATA.read_text(encoding="utf-8").splitlines()[:2]
    assert any("cpca" in line and "MIT" in line for line in head)


def test_table_reads_like_the_loader(index):
    assert len(read_table()) == len(index.places)


@pytest.mark.parametrize("name,short", [
    ("北京市", "北京"), ("河北省", "河北"), ("内蒙古自治区", "内蒙古"), ("广西壮族自治区", "广西"),
    ("宁夏回族自治区", "宁夏"), ("新疆维吾尔自治区", "新疆"), ("西藏自治区", "西藏"),
    ("香港特别行政区", "香港"), ("延边朝鲜族自治州", "延边"), ("恩施土家族苗族自治州", "恩施"),
    ("海西蒙古族藏族自治州", "海西"), ("巴音郭楞蒙古自治州", "巴音郭楞"), ("锡林郭勒盟", "锡林郭勒"),
    ("阿克苏地区", "阿克苏"), ("海淀区", "海淀"), ("通州区", "通州"), ("和县", "和县"),
    ("芒市", "芒市"), ("东乡族自治县", "东乡"), ("鄂温克族自治旗", "鄂温克"), ("鄂伦春自治旗", "鄂伦春"),
    ("杭锦后旗", "杭锦后旗"), ("准格尔旗", "准格尔"), ("西林区", "西林"), ("碑林区", "碑林"),
    ("隆林各族自治县", "隆林"), ("浦东新区", "浦东"), ("双江拉祜族佤族布朗族傣族自治县", "双江"),
])
def test_suffix_stripping(index, name, short):
    script = load_build_script()
    ethnic = script.load_ethnic(None) + ["壮族", "回族", "维吾尔", "朝鲜族", "土家族", "苗族", "蒙古族",
                                          "藏族", "蒙古", "东乡族", "鄂温克族", "拉祜族", "佤族", "布朗族", "傣族"]
    ethnic = sorted(set(ethnic), key=len, reverse=True)
    assert script.short_name(name, "000000", ethnic) == short
    # and the committed table agrees wherever the name exists
    rows = [p for p in index.places.values() if p.name == name]
    assert all(p.short == short for p in rows)


def test_shentongjia_forest_district(index):
    place = index.lookup("神农架")
    assert place is not None and place.name == "神农架林区"


def test_abolished_divisions_are_gone_and_missing_coordinates_filled(index):
    assert index.lookup("金明区") is None
    dingzhou = index.lookup("定州")
    assert dingzhou is not None and 38 < dingzhou.lat < 39 and 114 < dingzhou.lon < 116


@pytest.mark.parametrize("text,expected", [
    ("朝阳", "北京朝阳区"), ("朝阳区", "北京朝阳区"), ("朝阳市", "辽宁朝阳市"), ("辽宁朝阳", "辽宁朝阳市"),
    ("吉林朝阳", "长春朝阳区"), ("北京朝阳", "北京朝阳区"), ("江苏南京鼓楼", "南京鼓楼区"),
    ("和平区", "天津和平区"), ("沈阳和平区", "沈阳和平区"), ("沈阳和平", "沈阳和平区"),
])
def test_ambiguous_names(index, text, expected):
    mentions = index.find(text)
    assert [index.display_name(m.place) for m in mentions] == [expected]


def test_names_apart_are_separate_places(index):
    assert [index.display_name(m.place) for m in index.find("吉林和长春")] == ["吉林", "长春"]
    assert [index.display_name(m.place) for m in index.find("北京的朝阳区")] == ["北京朝阳区"]


def test_qualifier_folds_into_the_mention(index):
    (mention,) = index.find("北京朝阳明天")
    assert (mention.start, mention.end) == (0, 4)
    assert mention.qualified


@pytest.mark.parametrize("text", ["世界和平", "一路平安", "比如说", "楼顶天台", "这家小店", "城区",
                                  "郊区", "矿区", "我和县长", "江南水乡", "白云朵朵", "东方明珠"])
def test_ordinary_words_are_not_places(index, text):
    assert index.find(text) == []


def test_mask_keeps_day_words_out(index):
    assert index.find("今天水温") != []
    assert index.find("今天水温", mask=[(0, 2)]) == []


def test_weather_words_never_hide_inside_place_names(index):
    multi = [w for w in WEATHER_WORDS if len(w) > 1]
    for place in index.places.values():
        for word in multi:
            assert word not in place.name, (word, place.name)


def test_tokenizer_words(index):
    words = set(index.words())
    assert {"海淀", "海淀区", "北京", "内蒙古", "延边"} <= words
    assert "和平" not in words and "城区" not in words and "比如" not in words
    assert "和平区" in words
    assert all(len(w) >= 2 for w in words)


@pytest.mark.parametrize("name,parent,lat,lon", [
    ("台北", "台湾", 25.03, 121.57), ("高雄", "台湾", 22.63, 120.30), ("铜锣湾", "香港", 22.28, 114.18),
    ("油尖旺", "香港", 22.31, 114.17), ("氹仔", "澳门", 22.16, 113.56), ("九龙", "香港", 22.32, 114.17),
])
def test_hong_kong_macau_and_taiwan_below_the_province(index, name, parent, lat, lon):
    place = index.lookup(name)
    assert place is not None, name
    assert parent in [a.short for a in index.ancestors(place)]
    assert abs(place.lat - lat) < 0.05 and abs(place.lon - lon) < 0.05


def test_latin_keys_are_generated_for_every_place(index):
    for place in index.places.values():
        assert place.latin or place.latin_full, place
        for key in place.latin + place.latin_full:
            assert key.isascii() and key.isalpha() and key.islower(), (place, key)
    assert index.latin_word("shanghai") == "上海"
    assert index.latin_word("chaoyang") == index.latin_word("zhaoyang") == "朝阳"
    assert index.latin_word("haidianqu") == "海淀区"
    assert index.latin_word("hongkong") == "香港" and index.latin_word("taipei") == "台北"
    assert index.latin_word("guide") is None  # 贵德's pinyin is an English word


def test_sound_alike_names(index):
    assert [index.display_name(m.place) for m in index.find_alikes("深证天气")] == ["深圳"]
    assert index.find_alikes("深圳天气") == []  # the real name is not a variant
