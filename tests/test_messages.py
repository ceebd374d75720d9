"""Every inbound type parses into its typed object; hostile XML is refused."""
import pytest

from core import messages as m
from core.simulator import event_xml, message_xml
from core.wechat_xml import XMLRejected, parse_xml


def parse(xml: str) -> m.Message:
    return m.build_message(parse_xml(xml.encode("utf-8")))


def test_text():
    msg = parse(message_xml("text", {"Content": "明天北京天气 ]]> 😀"}, msg_id=6054768590064713728))
    assert isinstance(msg, m.TextMessage)
    assert msg.content == msg.text == "明天北京天气 ]]> 😀"
    assert msg.msg_id == "6054768590064713728"
    assert msg.dedup_key == "msg:6054768590064713728"


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
    assert msg.dedup_key == "evt:u1:1700000000"
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
    with pytest.raises(m.MessageFieldError):
        m.build_message({"ToUserName": "a", "FromUserName": "b", "MsgType": "location", "Location_X": "north"})


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
                                  b"\xff\xfe<xml/>"])
def test_malformed_xml_is_refused(body):
    with pytest.raises(XMLRejected):
        parse_xml(body)
