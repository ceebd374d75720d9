"""Derive ``places.tsv`` (the weather skill's place table) from cpca's ``adcodes.csv``.

Source: the MIT-licensed ``cpca`` package by DQinYuan (QinYuan Du), version 0.5.5,
https://github.com/DQinYuan/chinese_province_city_area_mapper . Its ``cpca/resources/adcodes.csv``
lists about 3,500 Chinese administrative divisions with longitude and latitude. The licence
notice is kept next to the output in ``LICENSE-cpca.txt``. ``cpca`` is not a runtime dependency:
this script was run once and its output is committed.

Hong Kong's 18 districts and best-known areas, Macau's parts and Taiwan's cities and counties
are not in cpca (it lists only the three provinces); they are added from ``SUPPLEMENT_PLACES``
below (names and coordinates of city centres: public geographic facts, rounded to 0.01 degree).

Latin names (column ``latin``) are generated here: the toneless pinyin of every name (pypinyin,
with the other readings of polyphonic characters: 朝阳 -> zhaoyang and chaoyang) plus the
English exonyms of ``EXONYMS`` (Peking, Canton, Hong Kong, Kowloon, Taipei...). pypinyin is a
build-time tool only, like cpca: neither is a runtime dependency.

How it was run (from the repository root)::

    cd /tmp && /work/main/.venv/bin/pip download --no-deps cpca==0.5.5 pypinyin==0.55.0 -d /tmp/cpca
    cd /tmp/cpca && python -m zipfile -e cpca-0.5.5-py3-none-any.whl x
    python -m venv /tmp/cpca/venv && /tmp/cpca/venv/bin/pip install pypinyin-0.55.0-py2.py3-none-any.whl
    cd /work/main && /tmp/cpca/venv/bin/python plugins/weather/data/build_places.py \\
        /tmp/cpca/x/cpca/resources/adcodes.csv /tmp/cpca/x/cpca/resources/56_nations.csv
    cp /tmp/cpca/x/cpca-0.5.5.dist-info/LICENSE plugins/weather/data/LICENSE-cpca.txt

The output is deterministic: running it again gives the same file byte for byte.

Output columns (tab-separated, one division per line, ``#`` lines are comments):

    adcode      6-digit administrative code
    name        official name (北京市, 海淀区, 延边朝鲜族自治州)
    short       name without its suffix (北京, 海淀, 延边); equals ``name`` when stripping
                would leave one character (和县, 芒市) or the suffix is part of the name
    level       province | city | district  (district = every county-level division)
    parent      adcode of the parent (city, or province when there is no prefecture level)
    lat, lon    coordinates as cpca gives them (a Chinese map source, so possibly GCJ-02, a few
                hundred metres off WGS-84: nothing for a weather forecast), 4 decimals
    prominence  integer, higher wins when a name is ambiguous (rule below)
    flags       ``q``: a county-level division whose short name is an ordinary word (和平, 白云,
                东风...): the short name only counts when a parent is named too (天津和平);  ``Q``: the full name is generic (城区, 矿区,
                市中区...) and likewise needs a parent;  empty otherwise
    aliases     extra comma-separated names (内蒙)
    latin       comma-separated latin keys (lower case, letters only) for the short name: its pinyin
                (beijing, xian, zhaoyang, chaoyang) and English exonyms (peking, hongkong, kowloon,
                taipei); the finder matches them on whole latin words and reads them as ``short``
    latin_full  the same for the full name (beijingshi, chaoyangqu), read as ``name``

Prominence rule (documented in docs/weather.md):
    base:  province-level 500, prefecture-level 400, county-level 300; the districts and counties
           of the four municipalities (北京 天津 上海 重庆) hold prefecture rank, so they get 400
    bonus: by the city the place belongs to (itself for a city): municipality +30,
           sub-provincial city (副省级) +20, other provincial capital +10
    ties:  the lower adcode wins (applied at run time)
So 朝阳 -> 北京朝阳区 (430) before 朝阳市 of Liaoning (400) and 长春朝阳区 (320); 鼓楼 -> 南京鼓楼区
(320) before 福州鼓楼区 (310); 吉林 -> 吉林省 (500) before 吉林市 (400).
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

HERE = Path(__file__).parent

PLACEHOLDERS = {"市辖区", "县", "省直辖县级行政区划", "自治区直辖县级行政区划"}
MUNICIPALITIES = {"11", "12", "31", "50"}
#: 副省级城市 (sub-provincial cities), by 4-digit prefix.
SUB_PROVINCIAL = {"4401", "4201", "2301", "2101", "5101", "3201", "6101", "2201", "3701", "3301",
                  "2102", "3702", "4403", "3502", "3302"}
#: The other provincial capitals (and 拉萨, 乌鲁木齐...), by 4-digit prefix.
CAPITALS = {"1301", "1401", "1501", "2201", "2301", "3201", "3301", "3401", "3501", "3601", "3701",
            "4101", "4201", "4301", "4401", "4501", "4601", "5101", "5201", "5301", "5401", "6101",
            "6201", "6301", "6401", "6501", "2101"}
#: Divisions the source lists without coordinates. Abolished ones are dropped; the two
#: province-administered cities of Hebei get their seats' coordinates (public geographic facts).
ABOLISHED = {"130421", "330204", "410211"}  # 邯郸县, 宁波江东区, 开封金明区
SUPPLEMENT = {"139001": (38.5161, 114.9901),  # 定州市
              "139002": (37.9432, 115.2180)}  # 辛集市
#: Short names that are ordinary words: they only count when a parent is named too.
COMMON_WORD_SHORT = {
    # generic or directional names shared by many cities
    "城关", "城中", "城东", "城西", "城北", "城南", "市中", "市北", "市南", "新城", "老城", "新市",
    "河东", "河西", "江南", "江北", "江东", "江城", "山城", "东区", "西区", "新区", "铁东", "铁西",
    "桥东", "桥西", "路南", "路北", "东山", "西山", "北山", "站前", "开发", "高新", "城厢", "西安",
    # ordinary words and set phrases (比如, 资源, 南部, 和平, 平安, 天台, 小店, 平房...)
    "比如", "资源", "南部", "港口", "公安", "通道", "友谊", "中方", "延长", "运河", "万年", "南岸",
    "工农", "长子", "宏伟", "平定", "互助", "莲花", "六合", "三门", "二七", "台前", "双桥", "二道",
    "无为", "民权", "小店", "同心", "宝塔", "元宝", "平房", "灯塔", "天涯", "七星", "海棠", "博爱",
    "同仁", "回民", "红星", "方正", "龙凤", "麒麟", "富民", "清流", "爱民", "惠民", "天心", "兴业",
    "白塔", "磐石", "石鼓", "康乐", "鸡冠", "安平", "天长", "新田", "八步", "城厢", "明光", "交口",
    "进贤", "永清", "双城", "东光", "钢城", "平乐", "新丰", "秀峰", "东明", "天台", "双塔", "集贤",
    "铁山", "高台", "方城", "方山", "白沙", "黑水", "玉泉", "天柱", "民乐", "延寿", "明水", "金水",
    "大田", "华安", "大悟", "永胜", "芙蓉", "九龙", "阿里", "未央", "和平", "新华", "长安", "白云",
    "青山", "南山", "向阳", "红旗", "东方", "解放", "平安", "太平", "富裕", "安定", "大方", "光明",
    "长寿", "吉利", "温泉", "清新", "阳春", "清水", "安宁", "平和", "东风", "永和", "中原", "新兴",
    "凉城", "榆树", "建华", "先锋", "前进", "胜利", "团结", "海港", "复兴", "民主", "友好", "兴隆",
    "长青", "和顺", "乐业", "安居", "合作", "共和", "如意", "海南", "河南", "振兴", "仁和", "文明",
    "大观", "秀英", "黄金", "丰满",
}
#: Full names that are generic (a part of any city): they need a parent too.
GENERIC_FULL = {"和县", "城区", "郊区", "矿区", "市中区", "城关区", "城中区", "城东区", "城西区", "城北区",
                "城南区", "新城区", "新区", "东区", "西区", "开发区", "高新区", "老城区"}
ALIASES = {"150000": ["内蒙"], "532800": ["版纳"]}

#: Places cpca does not list (it has only the provinces 台湾, 香港, 澳门): Hong Kong's 18 districts
#: and best-known areas, Macau's parts, Taiwan's cities and counties, with city-centre
#: coordinates (public geographic facts, 0.01 degree). Codes below 810100 / 820100 / 712100 are
#: this table's own keys (the national code list stops at the province), never shown to users.
#: (code, name, short, level, parent, lat, lon, flags)
SUPPLEMENT_PLACES = [
    # Hong Kong: the 18 districts
    ("810001", "中西区", "中西", "district", "810000", 22.28, 114.15, "q"),
    ("810002", "湾仔区", "湾仔", "district", "810000", 22.28, 114.18, ""),
    ("810003", "东区", "东区", "district", "810000", 22.28, 114.22, "Q"),
    ("810004", "南区", "南区", "district", "810000", 22.25, 114.16, "Q"),
    ("810005", "油尖旺区", "油尖旺", "district", "810000", 22.31, 114.17, ""),
    ("810006", "深水埗区", "深水埗", "district", "810000", 22.33, 114.16, ""),
    ("810007", "九龙城区", "九龙城", "district", "810000", 22.33, 114.19, ""),
    ("810008", "黄大仙区", "黄大仙", "district", "810000", 22.34, 114.19, ""),
    ("810009", "观塘区", "观塘", "district", "810000", 22.31, 114.23, ""),
    ("810010", "荃湾区", "荃湾", "district", "810000", 22.37, 114.11, ""),
    ("810011", "屯门区", "屯门", "district", "810000", 22.39, 113.98, ""),
    ("810012", "元朗区", "元朗", "district", "810000", 22.44, 114.02, ""),
    ("810013", "北区", "北区", "district", "810000", 22.50, 114.13, "Q"),
    ("810014", "大埔区", "大埔", "district", "810000", 22.45, 114.17, ""),
    ("810015", "西贡区", "西贡", "district", "810000", 22.38, 114.27, ""),
    ("810016", "沙田区", "沙田", "district", "810000", 22.38, 114.19, ""),
    ("810017", "葵青区", "葵青", "district", "810000", 22.36, 114.13, ""),
    ("810018", "离岛区", "离岛", "district", "810000", 22.29, 113.94, "q"),
    # Hong Kong: areas people name more often than their district
    ("810051", "香港岛", "香港岛", "district", "810000", 22.27, 114.19, ""),
    ("810052", "九龙", "九龙", "district", "810000", 22.32, 114.17, ""),
    ("810053", "新界", "新界", "district", "810000", 22.41, 114.11, ""),
    ("810054", "尖沙咀", "尖沙咀", "district", "810000", 22.30, 114.17, ""),
    ("810055", "旺角", "旺角", "district", "810000", 22.32, 114.17, ""),
    ("810056", "铜锣湾", "铜锣湾", "district", "810000", 22.28, 114.18, ""),
    ("810057", "中环", "中环", "district", "810000", 22.28, 114.16, ""),
    ("810058", "将军澳", "将军澳", "district", "810000", 22.31, 114.26, ""),
    ("810059", "大屿山", "大屿山", "district", "810000", 22.26, 113.95, ""),
    ("810060", "长洲", "长洲", "district", "810000", 22.21, 114.03, ""),
    ("810061", "东涌", "东涌", "district", "810000", 22.29, 113.94, ""),
    # Macau
    ("820001", "澳门半岛", "澳门半岛", "district", "820000", 22.20, 113.54, ""),
    ("820002", "氹仔", "氹仔", "district", "820000", 22.16, 113.56, ""),
    ("820003", "路环", "路环", "district", "820000", 22.12, 113.56, ""),
    ("820004", "路氹城", "路氹", "district", "820000", 22.14, 113.56, ""),
    # Taiwan: municipalities, cities and counties
    ("710100", "台北市", "台北", "city", "710000", 25.03, 121.57, ""),
    ("710200", "新北市", "新北", "city", "710000", 25.01, 121.46, ""),
    ("710300", "桃园市", "桃园", "city", "710000", 24.99, 121.30, ""),
    ("710400", "台中市", "台中", "city", "710000", 24.15, 120.67, ""),
    ("710500", "台南市", "台南", "city", "710000", 23.00, 120.23, ""),
    ("710600", "高雄市", "高雄", "city", "710000", 22.63, 120.30, ""),
    ("710700", "基隆市", "基隆", "city", "710000", 25.13, 121.74, ""),
    ("710800", "新竹市", "新竹", "city", "710000", 24.80, 120.97, ""),
    ("710900", "嘉义市", "嘉义", "city", "710000", 23.48, 120.45, ""),
    ("711000", "新竹县", "新竹县", "city", "710000", 24.84, 121.02, ""),
    ("711100", "嘉义县", "嘉义县", "city", "710000", 23.46, 120.33, ""),
    ("711200", "宜兰县", "宜兰", "city", "710000", 24.76, 121.75, ""),
    ("711300", "花莲县", "花莲", "city", "710000", 23.99, 121.60, ""),
    ("711400", "台东县", "台东", "city", "710000", 22.76, 121.14, ""),
    ("711500", "屏东县", "屏东", "city", "710000", 22.67, 120.49, ""),
    ("711600", "苗栗县", "苗栗", "city", "710000", 24.56, 120.82, ""),
    ("711700", "彰化县", "彰化", "city", "710000", 24.08, 120.54, ""),
    ("711800", "南投县", "南投", "city", "710000", 23.91, 120.68, ""),
    ("711900", "云林县", "云林", "city", "710000", 23.71, 120.54, ""),
    ("712000", "澎湖县", "澎湖", "city", "710000", 23.57, 119.58, ""),
    ("712001", "马祖", "马祖", "district", "710000", 26.16, 119.95, ""),
    ("712002", "阿里山", "阿里山", "district", "710000", 23.51, 120.80, ""),
    ("712003", "日月潭", "日月潭", "district", "710000", 23.86, 120.92, ""),
    ("712004", "垦丁", "垦丁", "district", "710000", 21.95, 120.80, ""),
]
#: Prominence of the supplement: Hong Kong's and Macau's districts rank like the districts of
#: the municipalities (400); Taiwan's cities like prefecture-level cities (400).
SUPPLEMENT_PROMINENCE = 400
#: Other names of places: 香江 for Hong Kong, and famous scenic towns and mountains people ask
#: the weather of by name, given to the county they lie in (public geographic facts).
ALIASES.update({"810000": ["香江"], "820004": ["路氹城"],
                "330483": ["乌镇"], "330127": ["千岛湖"], "320583": ["周庄"], "350203": ["鼓浪屿"],
                "330421": ["西塘"], "433123": ["凤凰古城"], "370900": ["泰山"], "610582": ["华山"],
                "420381": ["武当山"], "330903": ["普陀山"], "450500": ["涠洲岛"], "341023": ["宏村", "西递"],
                "341723": ["九华山"], "520423": ["黄果树"], "140922": ["五台山"]})
#: Nicknames of big cities people use in place of their names (魔都明天下雨吗, 鹏城周末天气):
#: public facts. Left out: nicknames that are another division's name (江城, 榕城, 龙城, 石城,
#: 古城) or shared by several cities (绿城, 鹿城).
CITY_NICKNAMES = {
    "310000": ["魔都", "申城"], "110000": ["帝都", "京城"], "440300": ["鹏城"],
    "440100": ["羊城", "花城", "穗城"], "510100": ["蓉城", "锦城"], "530100": ["春城"],
    "230100": ["冰城"], "370100": ["泉城"], "350200": ["鹭岛"], "430100": ["星城"],
    "320100": ["金陵"], "330100": ["杭城"], "120000": ["津门"], "460100": ["椰城"],
    "450100": ["邕城"], "520100": ["筑城"], "540100": ["日光城"], "210100": ["盛京"],
    "340100": ["庐州"], "360200": ["瓷都"], "650100": ["乌市"], "150100": ["呼市"],
    "370200": ["岛城"], "500000": ["山城"],
}
for _code, _names in CITY_NICKNAMES.items():
    ALIASES.setdefault(_code, []).extend(_names)
#: More sights and city areas people ask the weather of by name, given to the district or county
#: they lie in (public facts). Left out: names several places share (国贸, 南京路, 天池, 迪士尼,
#: 长隆), sights spread over many counties (长城), names that are another division's (恒山).
SIGHTS_AND_AREAS = {
    "360323": ["武功山"], "222426": ["长白山"], "632224": ["青海湖"], "410185": ["嵩山", "少林寺"],
    "330382": ["雁荡山"], "330521": ["莫干山"], "510181": ["青城山"], "520621": ["梵净山"],
    "530721": ["玉龙雪山"], "532901": ["洱海", "大理古城"], "530724": ["泸沽湖"],
    "654321": ["喀纳斯"], "654025": ["那拉提"], "632821": ["茶卡盐湖", "茶卡"],
    "620982": ["月牙泉", "鸣沙山"], "361123": ["三清山"], "513227": ["四姑娘山"],
    "130632": ["白洋淀"], "130623": ["野三坡"], "230183": ["亚布力"], "460202": ["蜈支洲岛"],
    "460204": ["天涯海角"], "110119": ["八达岭"], "110116": ["慕田峪"],
    "110101": ["故宫", "天安门", "南锣鼓巷"], "310101": ["外滩"], "310115": ["陆家嘴", "张江"],
    "110108": ["中关村", "五道口", "颐和园", "圆明园"], "110105": ["望京", "三里屯"],
    "440305": ["蛇口", "前海"], "440304": ["华强北"], "440106": ["珠江新城"],
    "500103": ["解放碑", "洪崖洞"], "510104": ["春熙路"], "510105": ["宽窄巷子"],
    "610113": ["大雁塔"], "610115": ["兵马俑", "华清池"], "330106": ["灵隐寺"],
    "320104": ["夫子庙"], "320102": ["中山陵"], "110112": ["环球影城"], "513337": ["亚丁"],
}
for _code, _names in SIGHTS_AND_AREAS.items():
    ALIASES.setdefault(_code, []).extend(_names)
#: Big airports whose name is not the name of the district or county they lie in (首都机场 is in
#: 顺义, 虹桥机场 in 长宁, 天河机场 in Wuhan's 黄陂, not Guangzhou's 天河): public facts. Each
#: name X gives the aliases X机场 and X国际机场. Airports named after their district (浦东, 大兴,
#: 萧山, 宝安, 双流...) need none: the finder reads 浦东 before 机场 already.
AIRPORTS = {
    "110113": ["首都"], "310105": ["虹桥"], "440111": ["白云"], "510185": ["天府"],
    "500112": ["江北"], "610404": ["咸阳"], "320115": ["禄口"], "350206": ["高崎"],
    "420116": ["天河"], "430121": ["黄花"], "530111": ["长水"], "460204": ["凤凰"],
    "370281": ["胶东"], "370112": ["遥墙"], "210112": ["桃仙"], "230102": ["太平"],
    "210211": ["周水子"], "120110": ["滨海"], "650104": ["地窝堡"], "340123": ["新桥"],
    "520102": ["龙洞堡"], "450105": ["吴圩"], "450312": ["两江"], "360112": ["昌北"],
    "320214": ["硕放"], "330212": ["栎社"], "810018": ["赤𫚭角", "香港"],  # 赤鱲角 as the normaliser writes it
}
for _code, _names in AIRPORTS.items():
    ALIASES.setdefault(_code, []).extend(f"{name}{kind}" for name in _names for kind in ("机场", "国际机场"))

#: English exonyms and other romanisations people type (Wade-Giles, Cantonese, postal): the
#: pinyin keys are generated, these are not pinyin. Keys: lower case, letters only.
EXONYMS = {
    "110000": ["peking"], "120000": ["tientsin"], "500000": ["chungking"], "320100": ["nanking"],
    "440100": ["canton"], "350200": ["amoy"], "370200": ["tsingtao"], "540000": ["tibet"],
    "150000": ["innermongolia"], "610000": ["shaanxi"], "230100": ["harbin"],
    "650100": ["urumqi"], "540100": ["lhasa"], "150100": ["hohhot"], "653100": ["kashgar"],
    "810000": ["hongkong", "hk"], "820000": ["macau", "macao"],
    "810001": ["centralandwestern"], "810002": ["wanchai"], "810005": ["yautsimmong"],
    "810006": ["shamshuipo"], "810007": ["kowlooncity"], "810008": ["wongtaisin"],
    "810009": ["kwuntong"], "810010": ["tsuenwan"], "810011": ["tuenmun"], "810012": ["yuenlong"],
    "810014": ["taipo"], "810015": ["saikung"], "810016": ["shatin"], "810017": ["kwaitsing"],
    "810018": ["islands"], "810051": ["hongkongisland"], "810052": ["kowloon"],
    "810053": ["newterritories"], "810054": ["tsimshatsui"], "810055": ["mongkok"],
    "810056": ["causewaybay"], "810058": ["tseungkwano"], "810059": ["lantau"],
    "810060": ["cheungchau"], "810061": ["tungchung"],
    "820002": ["taipa"], "820003": ["coloane"], "820004": ["cotai"],
    "710100": ["taipei"], "710200": ["newtaipei"], "710400": ["taichung"], "710600": ["kaohsiung"],
    "710700": ["keelung"], "710800": ["hsinchu"], "710900": ["chiayi"], "711200": ["ilan"],
    "711400": ["taitung"], "711500": ["pingtung"], "711700": ["changhua"], "712001": ["matsu"],
    "712003": ["sunmoonlake"], "712004": ["kenting"], "350527": ["kinmen", "quemoy"],
}
#: Generated pinyin keys that are everyday English words (贵德 guide): a sentence in English
#: must not find a county in them. The English exonyms above are kept.
ENGLISH_WORDS = {"guide", "change", "hang", "long", "pan", "bang", "fang", "ran", "tan", "gun",
                 "dingding"}
#: Readings of polyphonic characters that place names use where pypinyin's usual reading
#: differs (朝阳 chaoyang, 长春 changchun, 单县 shanxian, 珲春 hunchun, 洪洞 hongtong, 六合 luhe):
#: added as further keys next to the usual reading, never instead of it.
PLACE_READINGS = {"朝": "chao", "长": "chang", "单": "shan", "珲": "hun", "洞": "tong", "六": "lu",
                  "堡": "pu", "蔚": "yu", "尉": "yu", "莘": "shen", "铅": "yan", "乐": "le",
                  "会": "kuai", "番": "pan", "阿": "e", "曲": "qu", "都": "du", "重": "chong",
                  "解": "xie", "盖": "ge", "筠": "jun", "涡": "guo", "亳": "bo", "牟": "mu"}
ETHNIC_EXTRA = ["各族"]


def load_ethnic(path: Path | None) -> list[str]:
    names: list[str] = []
    if path and path.exists():
        for line in path.read_text(encoding="utf-8").split():
            line = line.strip()
            if not line:
                continue
            names.append(line)
            if line.endswith("族") and len(line) >= 3:
                names.append(line[:-1])  # 蒙古, 哈萨克, 柯尔克孜: names drop 族 sometimes
    names += ETHNIC_EXTRA
    return sorted(set(names), key=len, reverse=True)


def strip_ethnic(base: str, ethnic: list[str]) -> str:
    changed = True
    while changed:
        changed = False
        for e in ethnic:
            if base.endswith(e) and len(base) - len(e) >= 2:
                base = base[:-len(e)]
                changed = True
                break
    if base.endswith("族") and len(base) >= 3:  # 东乡族 -> 东乡, 鄂温克族 -> 鄂温克
        base = base[:-1]
    return base


def short_name(name: str, adcode: str, ethnic: list[str]) -> str:
    def keep(base: str) -> str:
        return base if len(base) >= 2 else name

    if name.endswith("特别行政区"):
        return keep(name[:-5])
    for suffix in ("自治区", "自治州", "自治县", "自治旗"):
        if name.endswith(suffix):
            return keep(strip_ethnic(name[:-len(suffix)], ethnic))
    if name.endswith("新区") and len(name) >= 4:  # 浦东新区 -> 浦东, 滨海新区 -> 滨海
        return keep(name[:-2])
    if name.endswith("林区") and adcode[2:4] == "90":  # 神农架林区 (not 西林区, 碑林区)
        return keep(name[:-2])
    for suffix in ("地区", "盟"):
        if name.endswith(suffix):
            return keep(name[:-len(suffix)])
    if name.endswith("旗"):
        base = name[:-1]
        if base[-1:] in ("左", "右", "前", "后", "中") or base.endswith("联合"):
            return name  # 杭锦后旗, 苏尼特左旗: the banner word is part of the name
        return keep(base)
    if name[-1:] in ("省", "市", "区", "县"):
        return keep(name[:-1])
    return name


def latin_keys(names: list[str]) -> list[str]:
    """Toneless pinyin keys of ``names``: pypinyin's reading first, then the place-name readings
    of ``PLACE_READINGS`` (朝阳: zhaoyang, chaoyang), ü written v and u (吕梁: lvliang, luliang)."""
    from itertools import product

    from pypinyin import Style, lazy_pinyin

    keys: list[str] = []

    def add(key: str) -> None:
        key = "".join(ch for ch in key.lower() if "a" <= ch <= "z")
        for variant in (key, key.replace("v", "u")):
            if len(variant) >= 4 and variant not in keys and variant not in ENGLISH_WORDS:
                keys.append(variant)

    for name in names:
        if not all("\u4e00" <= ch <= "\u9fff" for ch in name):
            continue
        usual = lazy_pinyin(name, style=Style.NORMAL)
        add("".join(usual))
        readings = [[r] + ([PLACE_READINGS[ch]] if PLACE_READINGS.get(ch, r) != r else [])
                    for ch, r in zip(name, usual)]
        for combo in product(*readings):
            add("".join(combo))
    return keys


def build(adcodes_csv: Path, nations_csv: Path | None) -> list[dict]:
    ethnic = load_ethnic(nations_csv)
    rows = {}
    with adcodes_csv.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            code = row["adcode"][:6]
            if row["adcode"][6:].strip("0"):
                continue  # sub-county levels (none in 0.5.5, but be safe)
            rows[code] = row

    def lat_lon(code: str) -> tuple[float, float] | None:
        row = rows.get(code)
        if code in SUPPLEMENT:
            return SUPPLEMENT[code]
        if row and row["latitude"] and row["longitude"]:
            return float(row["latitude"]), float(row["longitude"])
        return None

    places = []
    for code, row in sorted(rows.items()):
        name = row["name"].strip()
        if name in PLACEHOLDERS or code in ABOLISHED:
            continue
        prov, city = code[:2], code[:4]
        if code[2:] == "0000":
            level, parent = "province", ""
        elif code[4:] == "00":
            level, parent = "city", prov + "0000"
        else:
            level = "district"
            parent_city = city + "00"
            parent_row = rows.get(parent_city)
            if parent_row is None or parent_row["name"] in PLACEHOLDERS:
                parent = prov + "0000"
            else:
                parent = parent_city
        coords = lat_lon(code) or (lat_lon(parent) if parent else None)
        if coords is None:
            print(f"skipped (no coordinates): {code} {name}", file=sys.stderr)
            continue
        base = {"province": 500, "city": 400, "district": 300}[level]
        if level == "district" and prov in MUNICIPALITIES:
            base = 400
        bonus = 0
        if prov in MUNICIPALITIES and level != "province":
            bonus = 30
        elif level != "province" and city in SUB_PROVINCIAL:
            bonus = 20
        elif level != "province" and city in CAPITALS:
            bonus = 10
        short = short_name(name, code, ethnic)
        flags = ""
        if name in GENERIC_FULL or short in GENERIC_FULL:
            flags = "Q"
        elif short in COMMON_WORD_SHORT and level == "district" and short != name:
            flags = "q"
        places.append({
            "adcode": code, "name": name, "short": short, "level": level, "parent": parent,
            "lat": f"{coords[0]:.4f}", "lon": f"{coords[1]:.4f}", "prominence": str(base + bonus),
            "flags": flags, "aliases": ",".join(ALIASES.get(code, [])),
        })
    for code, name, short, level, parent, lat, lon, flags in SUPPLEMENT_PLACES:
        places.append({
            "adcode": code, "name": name, "short": short, "level": level, "parent": parent,
            "lat": f"{lat:.4f}", "lon": f"{lon:.4f}", "prominence": str(SUPPLEMENT_PROMINENCE),
            "flags": flags, "aliases": ",".join(a for a in ALIASES.get(code, []) if a != short),
        })
    places.sort(key=lambda p: p["adcode"])
    for p in places:
        short_keys = latin_keys([p["short"]]) + EXONYMS.get(p["adcode"], [])
        p["latin"] = ",".join(short_keys)
        p["latin_full"] = ",".join(k for k in latin_keys([p["name"]]) if k not in short_keys)
    return places


COLUMNS = ["adcode", "name", "short", "level", "parent", "lat", "lon", "prominence", "flags",
           "aliases", "latin", "latin_full"]


def write(places: list[dict], out: Path) -> None:
    with out.open("w", encoding="utf-8", newline="\n") as f:
        f.write("# Derived from adcodes.csv of cpca 0.5.5 (MIT, (c) 2018 QinYuan Du / DQinYuan);\n")
        f.write("# see LICENSE-cpca.txt and build_places.py. Do not edit by hand: re-run the script.\n")
        f.write("# Hong Kong, Macau and Taiwan below the province: public geographic facts (build_places.py).\n")
        f.write("\t".join(COLUMNS) + "\n")
        for p in places:
            f.write("\t".join(p[c] for c in COLUMNS) + "\n")


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    nations = Path(argv[2]) if len(argv) > 2 else None
    places = build(Path(argv[1]), nations)
    write(places, HERE / "places.tsv")
    print(f"wrote {len(places)} places to {HERE / 'places.tsv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
