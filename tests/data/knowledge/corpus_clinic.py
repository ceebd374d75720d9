"""A third invented organisation for checking the knowledge skill's transfer (issue 16): 阳光社区卫生
服务中心, a community health centre's outpatient notices, in five formats (DOCX, PDF, Markdown, HTML,
TXT) and a more formal register (须、凭、暂缓、辖区) than the academy of corpus.py and the fitness club
of corpus_gym.py. Nothing is fitted on it. Its questions are in ``clinic_questions.tsv`` (same
format as tuning_questions.tsv); never the held-out set.

The PDF (``clinic_vaccination.pdf``) is carried beside this file, made by
``python -m tests.data.knowledge.corpus_clinic`` with fpdf2 and the WenQuanYi Zen Hei font, as the
academy's is.
"""
from __future__ import annotations

from pathlib import Path

from tests.data.knowledge.corpus import write_documents, write_pdf

HERE = Path(__file__).parent
PDF = HERE / "clinic_vaccination.pdf"

GUIDE = ("阳光社区卫生服务中心门诊就诊指南", [
    ("一、挂号方式", [
        "本中心实行预约挂号，可通过“健康阳光”公众号、自助机或人工窗口预约。当日号源每天早上7:30开放。",
        "普通门诊挂号费10元，专家门诊挂号费30元，60岁以上老人免收普通挂号费。",
    ]),
    ("二、就诊流程", [
        ("list", ["取号后在候诊区等候叫号，过号需重新排队。",
                  "检查检验结果可在公众号查询，血常规约1小时出结果。",
                  "复诊患者请携带既往病历和检查报告。"]),
    ]),
    ("三、医保结算", [
        "本中心为医保定点机构，持社保卡或医保电子凭证可直接结算。门诊报销比例为70%，一个自然年度起付线为300元。",
        "异地医保需先在参保地办理备案，未备案的先自费，再回参保地报销。",
    ]),
    ("四、科室分布", [
        ("table", [["科室", "位置"], ["全科门诊", "一楼"], ["口腔科", "二楼东侧"], ["中医科", "二楼西侧"],
                   ["康复理疗科", "三楼"], ["检验科", "一楼北侧"]]),
    ]),
    ("五、取药", [
        "处方药凭医生处方在一楼药房取药。高血压、糖尿病等慢性病患者病情稳定的，一次可开具最长12周用量。",
    ]),
])

VACCINATION = ("预防接种须知", [
    ("一、接种时间", [
        "儿童预防接种门诊每周二、周四上午8:00至11:30开放，成人疫苗接种为每周三全天。",
    ]),
    ("二、接种前准备", [
        "儿童接种须携带预防接种证，由监护人陪同。接种前请如实告知孩子的健康状况及过敏史，体温38℃以上者暂缓接种。",
    ]),
    ("三、接种后注意事项", [
        "接种后须在留观区留观30分钟，无异常方可离开。接种部位24小时内不要沾水。",
    ]),
    ("四、自费疫苗", [
        "流感疫苗每年9月起供应，四价流感疫苗128元一针。HPV疫苗需在公众号登记排队，到苗后短信通知。",
    ]),
])

HOURS = ("门诊时间与联系方式", [
    ("门诊时间", [
        ("table", [["日期", "门诊时间"], ["周一至周五", "8:00-17:00"], ["周六", "8:00-12:00"],
                   ["周日及法定节假日", "仅开放全科门诊上午"]]),
    ]),
    ("医生出诊", [
        ("table", [["医生", "科室", "出诊时间"], ["刘芳主任医师", "全科", "周一、周三上午"],
                   ["孙强副主任医师", "中医科", "周二、周五全天"], ["黄丽医师", "口腔科", "周一至周五"]]),
    ]),
    ("夜间急症", [
        "本中心不设急诊，夜间急症请拨打120或前往市第三人民医院急诊科。",
    ]),
    ("地址与交通", [
        "地址：南京市鼓楼区阳光路25号。公交18路、32路阳光路站下车即到。",
        "中心门前停车位有限，建议绿色出行；停车场前30分钟免费。",
    ]),
    ("咨询电话", [
        "预约咨询电话：025-8666-1200，工作时间内有人接听。",
    ]),
])

FAMILY_DOCTOR = ("家庭医生签约服务常见问题", [
    ("什么是家庭医生签约？", ["居民与社区的家庭医生团队签订服务协议，团队由全科医生、护士和公卫医生组成，提供健康管理和慢病随访。"]),
    ("签约要花钱吗？", ["基础服务包免费；个性化服务包每年120元，含一次上门随访和一次体检报告解读。"]),
    ("哪些人可以签约？", ["本辖区常住居民均可签约，65岁以上老人、高血压和糖尿病患者、孕产妇优先。"]),
    ("签约后有什么好处？", ["签约居民转诊上级医院可优先预约专家号，每季度可免费测一次血糖。"]),
    ("签约期多长？可以换医生吗？", ["签约期为一年，期满不续约自动解约；签约期内可在服务窗口申请更换家庭医生一次。"]),
])

CHECKUP = ("体检套餐与须知", [
    ("一、体检套餐", [
        ("table", [["套餐", "价格", "主要项目"], ["基础套餐", "298元", "血常规、尿常规、肝功能、心电图"],
                   ["中老年套餐", "680元", "基础套餐加颈动脉彩超、骨密度"],
                   ["女性套餐", "560元", "基础套餐加乳腺彩超、妇科检查"]]),
    ]),
    ("二、体检须知", [
        "体检前一天晚上10点后禁食，当天早上空腹抽血。体检时间为周一至周六上午7:30-10:00。",
        "辖区65岁以上老人每年可免费体检一次，需携带身份证。",
    ]),
    ("三、报告领取", [
        "体检报告在5个工作日后可在公众号查看，纸质报告到二楼体检中心领取。",
    ]),
])

#: file name -> document, for tests that check each answer phrase is in one document only
DOCUMENTS = {"guide.docx": GUIDE, "vaccination.pdf": VACCINATION, "hours.md": HOURS,
             "family_doctor.html": FAMILY_DOCTOR, "checkup.txt": CHECKUP}


def write_corpus(folder: Path) -> dict[str, Path]:
    """Write the five documents into ``folder``; returns them by file name."""
    return write_documents(folder, {name: doc for name, doc in DOCUMENTS.items() if not name.endswith(".pdf")},
                           pdfs={"vaccination.pdf": PDF})


if __name__ == "__main__":
    write_pdf(VACCINATION, PDF)
    print(f"wrote {PDF} ({PDF.stat().st_size} bytes)")
