"""A second invented organisation for tuning the knowledge skill (issue 16): 绿洲健身中心, a fitness
club, in four formats (DOCX, Markdown, HTML, TXT), written to test whether what is fitted on the
academy of corpus.py holds on documents it was not fitted on. Its questions are in
``gym_questions.tsv`` (same format as tuning_questions.tsv); never the held-out set.
"""
from __future__ import annotations

from pathlib import Path

from tests.data.knowledge.corpus import write_documents

MEMBERSHIP = ("绿洲健身会员卡与价格", [
    ("一、会员卡种类", [
        ("table", [["卡种", "价格", "说明"], ["月卡", "399元", "30天内不限次数"], ["季卡", "999元", "90天内不限次数"],
                   ["年卡", "2980元", "365天，可冻结一次"], ["次卡", "600元", "20次，有效期半年"]]),
        "全日制学生凭学生证办理任意卡种享八折优惠。",
    ]),
    ("二、私教课程", [
        "私教课每节60分钟，单节380元，购买20节课包每节320元。首次体验私教课99元。",
    ]),
    ("三、办卡须知", [
        "办卡需本人持身份证到前台拍照录入人脸信息。会员卡仅限本人使用，不得转借。",
    ]),
    ("四、冻结与转让", [
        "年卡会员每年可申请冻结一次，冻结期最长60天，需提前3天在小程序申请。会员卡可转让一次，转让手续费200元。",
    ]),
])

VENUE = ("场馆与开放时间", [
    ("营业时间", [
        ("table", [["日期", "营业时间"], ["周一至周五", "6:00-23:00"], ["周六、周日", "8:00-22:00"], ["除夕至初三", "闭馆"]]),
    ]),
    ("游泳池", [
        "恒温泳池水温保持在28度，深水区1.8米。进入泳池须佩戴泳帽，未满12岁儿童须由家长陪同。",
    ]),
    ("更衣与储物", [
        "更衣室提供免费毛巾和吹风机。储物柜当天使用，晚上闭馆前须清空；长期储物柜每月50元。",
    ]),
    ("交通与停车", [
        "地址：成都市高新区天府大道中段666号环球中心B座2楼。",
        "会员凭会员卡在商场地下车库免费停车3小时。",
    ]),
])

CLASSES = ("团体课程常见问题", [
    ("团课需要预约吗？", ["所有团课须提前在小程序预约，开课前2小时停止取消，迟到10分钟不能进场。"]),
    ("有哪些团课？", ["团课包括动感单车、流瑜伽、搏击操和普拉提，月卡以上会员免费参加。"]),
    ("预约了没去会怎样？", ["一个月内预约后未到场累计3次，将暂停团课预约权限两周。"]),
    ("孕期可以上课吗？", ["孕期会员请先咨询教练并出示医生证明，建议只参加孕产瑜伽。"]),
])

COACHES = ("教练团队", [
    ("一、力量训练", ["张伟教练，国家二级运动员，擅长增肌和体态矫正，持有ACE私人教练证书。"]),
    ("二、瑜伽", ["林晓教练，瑜伽联盟RYT500认证，教授流瑜伽和孕产瑜伽。"]),
    ("三、游泳", ["陈浩教练，前省游泳队队员，负责成人和儿童游泳培训。"]),
])

RULES = ("会员守则", [
    ("退款", [
        "办卡7天内且未使用的，可全额退款。已使用的会员卡不予退款，可按规定转让。",
        "私教课包未上完的课时按原单价退还，扣除10%手续费。",
    ]),
    ("安全", [
        "初次使用器械前请向值班教练咨询。患有心脏病、高血压等疾病者须如实告知并签署健康声明。",
        "进入器械区须穿运动鞋，不得赤脚或穿拖鞋。",
    ]),
    ("访客", [
        "会员每月可带一位朋友免费体验一次，需提前登记朋友的身份证信息。",
    ]),
])


def write_corpus(folder: Path) -> dict[str, Path]:
    """Write the five documents into ``folder``; returns them by file name."""
    return write_documents(folder, {"membership.docx": MEMBERSHIP, "venue.md": VENUE, "classes.html": CLASSES,
                                    "coaches.txt": COACHES, "rules.md": RULES})
