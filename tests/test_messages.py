"""Every inbound type parses into its typed object; hostile XML is refused."""
import pytest

from core.access import messages as m
from core.access.wechat_xml import XMLRejected, parse_xml
from core.operations.wechat_client import event_xml, message_xml, text_xml


def parse(xml: str) -> m.Message:
    return m.build_message(parse_xml(xml.encode("utf-8")))


def test_text():
    msg = parse(message_xml("text", {"Content": "明天北京天气 ]]> 😀"}, msg_id=6054768590064713728))
    assert isinstance(msg, m.TextMessage)
    assert msg.content == msg.text == "明天北京天气 ]]> 😀"
    assert msg.msg_id == "6054768590064713728"
    assert msg.dedup_key == "msg:o_simulator_user:6054768590064713728"


def test_text_with_msgdataid_and_idx():
    msg = parse(message_xml("text", {"Content": "hi", "MsgDataId": "2247483", "Idx": "1"}))
    assert (msg.msg_data_id, msg.idx) == ("2247483", "1")


def test_image():
    msg = parse(message_xml("image", {"PicUrl": "http://p/1.jpg", "MediaId": "mid"}))
    assert isinstance(msg, m.ImageMessage) and msg.pic_url == "http://p/1.jpg" and msg.media_id == "mid"


def test_voice_with_and_without_recognition():
    msg = parse(message_xml("voice", {"MediaId": "v", "Format": "amr", "Recognition": "上海天气"}))
    assert isinstance(msg, m.VoiceMessage) and msg.recognition == msg.text == "上海天气" and msg.format == "amr"
    msg = parse(message_xml("voice", {"MediaId": "v", "Format": "speex", "Recognition": ""}))
    assert msg.text == ""


@pytest.mark.parametrize("kind,cls", [("video", m.VideoMessage), ("shortvideo", m.ShortVideoMessage)])
def test_video_and_shortvideo(kind, cls):
    msg = parse(message_xml(kind, {"MediaId": "a", "ThumbMediaId": "b"}))
    assert type(msg) is cls and msg.thumb_media_id == "b"


def test_location_and_link():
    msg = parse(message_xml("location", {"Location_X": "39.9", "Location_Y": "116.4", "Scale": "15",
                                         "Label": "北京市东城区"}))
    assert isinstance(msg, m.LocationMessage)
    assert (msg.latitude, msg.longitude, msg.scale, msg.label) == (39.9, 116.4, 15, "北京市东城区")
    msg = parse(message_xml("link", {"Title": "t", "Description": "d", "Url": "https://x"}))
    assert isinstance(msg, m.LinkMessage) and msg.url == "https://x"


def test_subscribe_plain_and_scan_subscribe():
    msg = parse(event_xml("subscribe"))
    assert isinstance(msg, m.SubscribeEvent) and msg.scene is None and msg.msg_id is None
    msg = parse(event_xml("subscribe", {"EventKey": "qrscene_store_12", "Ticket": "TICKET"},
                          from_user="u1", create_time=1700000000))
    assert msg.scene == "store_12" and msg.ticket == "TICKET"
    assert msg.dedup_key == "evt:u1:1700000000:subscribe:qrscene_store_12"
    assert msg.kind == "event.subscribe"


def test_other_events():
    assert isinstance(parse(event_xml("unsubscribe")), m.UnsubscribeEvent)
    scan = parse(event_xml("SCAN", {"EventKey": "123", "Ticket": "T"}))
    assert isinstance(scan, m.ScanEvent) and scan.scene == "123"
    loc = parse(event_xml("LOCATION", {"Latitude": "23.1", "Longitude": "113.3", "Precision": "65.0"}))
    assert isinstance(loc, m.LocationEvent) and (loc.latitude, loc.longitude, loc.precision) == (23.1, 113.3, 65.0)
    click = parse(event_xml("CLICK", {"EventKey": "MENU_HELP"}))
    assert isinstance(click, m.ClickEvent) and click.key == "MENU_HELP"
    view = parse(event_xml("VIEW", {"EventKey": "https://shop.example", "MenuId": "7"}))
    assert isinstance(view, m.ViewEvent) and view.url == "https://shop.example" and view.menu_id == "7"
    tpl = parse(event_xml("TEMPLATESENDJOBFINISH", {"MsgID": "200163836", "Status": "success"}))
    assert isinstance(tpl, m.TemplateSendJobFinishEvent) and tpl.job_id == "200163836"
    mass = parse(event_xml("MASSSENDJOBFINISH", {"MsgID": "1988", "Status": "send success",
                                                 "TotalCount": "100", "FilterCount": "80",
                                                 "SentCount": "75", "ErrorCount": "5"}))
    assert isinstance(mass, m.MassSendJobFinishEvent)
    assert (mass.total_count, mass.sent_count, mass.error_count) == (100, 75, 5)


def test_unknown_types_keep_every_field():
    msg = parse(message_xml("miniprogrampage", {"Title": "t", "AppId": "wx1"}))
    assert isinstance(msg, m.UnknownMessage) and msg.fields["AppId"] == "wx1"
    evt = parse(event_xml("scancode_push", {"EventKey": "k", "ScanCodeInfo": ""}))
    assert isinstance(evt, m.UnknownEvent) and evt.event == "scancode_push" and evt.fields["EventKey"] == "k"


def test_nested_fields_are_kept():
    xml = ("<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>"
           "<MsgType>event</MsgType><Event>pic_sysphoto</Event><SendPicsInfo><Count>2</Count>"
           "<PicList><item><PicMd5Sum>x</PicMd5Sum></item><item><PicMd5Sum>y</PicMd5Sum></item></PicList>"
           "</SendPicsInfo></xml>")
    evt = parse(xml)
    assert evt.fields["SendPicsInfo"]["Count"] == "2"
    assert len(evt.fields["SendPicsInfo"]["PicList"]["item"]) == 2


@pytest.mark.parametrize("fields", [
    {"FromUserName": "b", "MsgType": "text"},
    {"ToUserName": "a", "MsgType": "text"},
    {"ToUserName": "a", "FromUserName": "b"},
])
def test_missing_required_fields(fields):
    with pytest.raises(m.MessageFieldError):
        m.build_message(fields)


def test_wrong_types_are_field_errors():
    with pytest.raises(m.MessageFieldError):
        m.build_message({"ToUserName": "a", "FromUserName": "b", "MsgType": "text", "CreateTime": "soon"})


XXE = b"""<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><MsgType>text</MsgType><Content>&xxe;</Content></xml>"""
LAUGHS = b"""<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><xml><Content>&lol3;</Content></xml>"""
DTD_ONLY = b"""<?xml version="1.0"?><!DOCTYPE xml SYSTEM "http://evil.example/x.dtd"><xml><a>1</a></xml>"""


@pytest.mark.parametrize("body", [XXE, LAUGHS, DTD_ONLY])
def test_hostile_xml_is_refused(body):
    with pytest.raises(XMLRejected):
        parse_xml(body)


@pytest.mark.parametrize("body", [b"", b"<xml>", b"not xml", b"<root><a>1</a></root>", b"<xml></xml>",
                                  b"\xff\xfe<xml/>",
                                  # declared encodings Python does not know or cannot read text with
                                  # (expat's handler raised LookupError: a 500 and a traceback)
                                  b'<?xml version="1.0" encoding="no-such"?><xml><a>1</a></xml>',
                                  b'<?xml version="1.0" encoding="hex"?><xml><a>1</a></xml>'])
def test_malformed_xml_is_refused(body):
    with pytest.raises(XMLRejected):
        parse_xml(body)


# ---- record keys (issue 12, items 2 and 4) -------------------------------------------------------

def test_same_msgid_from_two_users_are_two_records():
    first = parse(text_xml("北京天气", from_user="o_alice", msg_id=42))
    second = parse(text_xml("上海天气", from_user="o_bob", msg_id=42))
    assert first.dedup_key != second.dedup_key
    assert parse(text_xml("again", from_user="o_alice", msg_id=42)).dedup_key == first.dedup_key


def test_users_cannot_run_into_the_msgid_part_of_a_key():
    assert (parse(text_xml("x", from_user="o_a:1", msg_id=2)).dedup_key
            != parse(text_xml("x", from_user="o_a", msg_id="1:2")).dedup_key)


def test_events_in_the_same_second_differ_by_type_and_key():
    same = {"from_user": "o_alice", "create_time": 1700000000}
    location = parse(event_xml("LOCATION", {"Latitude": "23.1", "Longitude": "113.3"}, **same))
    subscribe = parse(event_xml("subscribe", **same))
    click_a = parse(event_xml("CLICK", {"EventKey": "A"}, **same))
    click_b = parse(event_xml("CLICK", {"EventKey": "B"}, **same))
    keys = {e.dedup_key for e in (location, subscribe, click_a, click_b)}
    assert len(keys) == 4
    assert parse(event_xml("CLICK", {"EventKey": "A"}, **same)).dedup_key == click_a.dedup_key
    assert parse(event_xml("subscribe", from_user="o_bob", create_time=1700000000)).dedup_key not in keys


def test_log_key_hashes_the_user():
    msg = parse(text_xml("x", from_user="o_secret_openid", msg_id=7))
    assert "o_secret_openid" not in msg.log_key and msg.log_key.endswith(":7")
    evt = parse(event_xml("subscribe", from_user="o_secret_openid"))
    assert "o_secret_openid" not in evt.log_key


# ---- structure: depth, duplicates, whitespace (items 7 and 12) ----------------------------------

def test_deep_nesting_is_refused_not_a_recursion_error():
    xml = "<xml><ToUserName>a</ToUserName>" + "<a>" * 1000 + "</a>" * 1000 + "</xml>"
    with pytest.raises(XMLRejected, match="nested"):
        parse_xml(xml)


@pytest.mark.parametrize("name", ["Content", "FromUserName", "MsgType", "MsgId"])
def test_a_duplicated_field_is_refused(name):
    xml = message_xml("text", {"Content": "我是谁"}, msg_id=1)
    value = "o_other" if name == "FromUserName" else "1"
    xml = xml.replace("</xml>", f"<{name}><![CDATA[{value}]]></{name}></xml>")
    with pytest.raises(XMLRejected, match=f"duplicated field <{name}>"):
        parse_xml(xml)


def test_whitespace_around_cdata_is_layout():
    """WeChat's 卡券 documentation writes its samples this way."""
    xml = ("<xml> <ToUserName> <![CDATA[gh_a]]> </ToUserName>\n <FromUserName> <![CDATA[o_u]]> "
           "</FromUserName> <CreateTime> 1472549042 </CreateTime> <MsgType> <![CDATA[event]]> "
           "</MsgType>\n <Event> <![CDATA[user_get_card]]> </Event> <CardId> <![CDATA[pX]]> </CardId></xml>")
    evt = parse(xml)
    assert isinstance(evt, m.Event) and evt.kind == "event.user_get_card"
    assert (evt.from_user, evt.create_time, evt.fields["CardId"]) == ("o_u", 1472549042, "pX")


# ---- location sanity (item 8) --------------------------------------------------------------------

BAD_COORDINATES = [("nan", "116.4"), ("39.9", "inf"), ("1e308", "116.4"), ("-Infinity", "0"),
                   ("91", "116.4"), ("39.9", "-180.5"), ("", "116.4"), ("north", "116.4"), ("0x10", "1"),
                   ("١٢", "116.4")]


@pytest.mark.parametrize("lat,lon", BAD_COORDINATES)
def test_a_location_message_with_unusable_coordinates_has_no_location(lat, lon):
    msg = parse(message_xml("location", {"Location_X": lat, "Location_Y": lon, "Scale": "15", "Label": "某地"}))
    assert not isinstance(msg, m.LocationMessage)
    assert isinstance(msg, m.UnknownMessage) and msg.kind == "location"


@pytest.mark.parametrize("lat,lon", BAD_COORDINATES)
def test_a_location_event_with_unusable_coordinates_has_no_location(lat, lon):
    evt = parse(event_xml("LOCATION", {"Latitude": lat, "Longitude": lon, "Precision": "30"}))
    assert not isinstance(evt, m.LocationEvent)
    assert isinstance(evt, m.UnknownEvent) and evt.kind == "event.LOCATION"


def test_edges_are_places_and_odd_scale_or_precision_mean_unknown():
    msg = parse(message_xml("location", {"Location_X": "-90", "Location_Y": "180.000000", "Scale": "1e9"}))
    assert isinstance(msg, m.LocationMessage) and (msg.latitude, msg.longitude, msg.scale) == (-90, 180, 0)
    evt = parse(event_xml("LOCATION", {"Latitude": "23.137466", "Longitude": "113.352425", "Precision": "nan"}))
    assert isinstance(evt, m.LocationEvent) and evt.precision == 0.0 and evt.latitude == 23.137466


# ---- the parser against defusedxml's ElementTree (the reference it replaced) ---------------------

def _reference_fields(body: bytes) -> dict | None:
    """What defusedxml.ElementTree plus a walk of its tree makes of ``body`` (None: refused)."""
    import defusedxml.ElementTree as safe_et
    from defusedxml import DefusedXmlException
    from xml.etree.ElementTree import ParseError

    def value(element, depth=1):
        children = list(element)
        if not children:
            return (element.text or "").strip()
        if depth >= 8:
            return None
        out: dict = {}
        for child in children:
            item = value(child, depth + 1)
            if item is None:
                return None
            if child.tag in out:
                if depth == 1:
                    return None
                existing = out[child.tag]
                out[child.tag] = existing + [item] if isinstance(existing, list) else [existing, item]
            else:
                out[child.tag] = item
        return out

    try:
        root = safe_et.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DefusedXmlException, ParseError, ValueError, TypeError, LookupError):
        return None  # (LookupError: an unknown declared encoding, a 500 in the old code; refused now)
    fields = value(root) if root.tag == "xml" else None
    return fields if isinstance(fields, dict) else None


def _documents() -> list[bytes]:
    from tests.test_peer_samples import load_samples

    docs = [xml.encode("utf-8") for _kind, _cls, xml in load_samples()]
    docs += [XXE, LAUGHS, DTD_ONLY, b"", b"<xml>", b"not xml", b"<root><a>1</a></root>", b"<xml></xml>",
             b"\xff\xfe<xml/>", b"<xml/>", b"<xml>text only</xml>", b"<xml><a>1</a></xml><b/>",
             b"<xml><a>x<!-- c -->y<?pi z?>w</a><b> &lt;&amp;&gt; </b></xml>",
             b"<xml><a><![CDATA[p]]]]><![CDATA[>q]]></a></xml>",
             b'<xml xmlns:w="urn:w"><w:a>1</w:a><a>2</a></xml>', b'<w:xml xmlns:w="urn:w"><a>1</a></w:xml>',
             b"<xml><a>1</a><a>2</a></xml>", b"<xml><L><i>1</i><i>2</i><i>3</i></L><x a='1'>v</x></xml>",
             b"<xml><a>&undefined;</a></xml>", b"<xml><a>&#x4e2d;&#25991;</a></xml>",
             "<?xml version='1.0' encoding='gbk'?><xml><a>中文</a></xml>".encode("gbk"),
             *(f"<?xml version='1.0' encoding='{name}'?><xml><a>1</a></xml>".encode("ascii")
               for name in ("no-such-encoding", "hex", "rot13", "utf-32", "cp037", "latin-1")),
             "<xml><a>中文</a></xml>".encode("utf-16"),
             b'<!DOCTYPE xml [<!ATTLIST xml a CDATA "1">]><xml><a>1</a></xml>',
             b"<xml><a>" + b"<b>" * 7 + b"1" + b"</b>" * 7 + b"</a></xml>",
             b"<xml><a>" + b"<b>" * 6 + b"1" + b"</b>" * 6 + b"</a></xml>"]
    docs.append(message_xml("text", {"Content": "明天北京天气 ]]> 😀\n\t x"}).encode("utf-8"))
    return docs


@pytest.mark.parametrize("body", _documents())
def test_parser_gives_what_defusedxml_elementtree_gives(body):
    """Same fields for every document both accept, and everything either refuses, both refuse."""
    expected = _reference_fields(body)
    if expected is None:
        with pytest.raises(XMLRejected):
            parse_xml(body)
    else:
        assert parse_xml(body) == expected
