"""The demo data set: fictional hospitals, departments, doctors, fees, weekly clinics,
one account with two patients and one staff user per role.

Plain tables only; `guahao.demo.seed` builds them through the features' service functions.
Every hospital, doctor and person here is invented. The patients' ID numbers are computed
(GB 11643 check character) in the builder from the bodies below, so they are valid but
belong to nobody.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

# Development only: printed at the end of `guahao seed --demo`, refused in production.
DEMO_PASSWORD = "guahao-demo-2026"
DEMO_PHONE = "13800138000"
SCHEDULE_DAYS = 14
LIVENESS_TOKEN = "pass-demo"  # accepted by the sandbox face-check provider
SUSPEND_REASON = "医生临时外出会诊,本次门诊停诊,已预约的患者将全额退费。"

MON, TUE, WED, THU, FRI, SAT, SUN = range(7)
AM, PM, EVE, DAY = "morning", "afternoon", "evening", "all_day"
WEEKDAYS = (MON, TUE, WED, THU, FRI)


@dataclass(frozen=True)
class Dept:
    name: str
    location: str
    children: tuple[Dept, ...] = ()
    max_age: int | None = None
    allowed_sex: str | None = None
    introduction: str = ""
    his_code: str | None = None  # its code at the hospital's HIS (the simulator's seed)


@dataclass(frozen=True)
class Doc:
    department: str  # name of the (sub-)department in this hospital's tree
    name: str
    title: str  # chief | associate_chief | attending | resident
    specialty: str
    sessions: tuple[tuple[int, str], ...]  # (weekday, period) of the weekly clinics
    level: str | None = None  # registration level; by title when None
    his_code: str | None = None  # their code at the hospital's HIS (the simulator's seed)


@dataclass(frozen=True)
class Clinic:
    """A department's general clinic (普通门诊, no named doctor)."""

    department: str
    weekdays: tuple[int, ...]
    period: str
    platform_capacity: int = 30
    onsite_capacity: int = 20


@dataclass(frozen=True)
class DemoHospital:
    key: str
    name: str
    short_name: str
    level: str
    city: str
    district: str
    address: str
    phone: str
    latitude: float
    longitude: float
    introduction: str
    departments: tuple[Dept, ...]
    doctors: tuple[Doc, ...]
    clinics: tuple[Clinic, ...]
    fee_grade: str
    rules: dict = field(default_factory=dict)  # overrides of the hospital's default rules
    entrance: str = "department"  # or registration_level: 普通号 / 专家号 first
    his: HisLink | None = None  # None: `local`, no HIS


@dataclass(frozen=True)
class HisLink:
    """A demo hospital whose HIS is the embedded simulator (`guahao his-sim`, started by
    `guahao serve`): its mode and the simulator pool it sells. Its schedules come from the
    HIS (the sync job), so it has no weekly templates here."""

    mode: str  # synced | realtime
    pool: str  # "guahao": ours alone; "shared": sold by us and another platform
    platform: str = "guahao"


# Registration level and (platform, onsite) capacity of a doctor's clinic, by title.
LEVEL_BY_TITLE = {"chief": "expert", "associate_chief": "expert", "attending": "general", "resident": "general"}
CAPACITY_BY_TITLE = {"chief": (12, 4), "associate_chief": (16, 6), "attending": (20, 8), "resident": (24, 8)}

# Fees in fen: the 挂号费 (registration fee) of the grade, and the 诊查费 (consultation fee) by
# registration level and title; a patient pays both
# ("none" = a general clinic without a named doctor).
FEE_GRADES: dict[str, tuple[int, dict[str, dict[str, int]]]] = {
    "tertiary": (500, {
        "general": {"none": 2000, "resident": 2000, "attending": 2500, "associate_chief": 2500, "chief": 2500},
        "expert": {"none": 4000, "resident": 4000, "attending": 4000, "associate_chief": 6000, "chief": 8000},
        "special": {"none": 30000, "resident": 30000, "attending": 30000, "associate_chief": 30000,
                    "chief": 50000},
    }),
    "secondary": (300, {
        "general": {"none": 1200, "resident": 1200, "attending": 1500, "associate_chief": 1500, "chief": 1500},
        "expert": {"none": 2500, "resident": 2500, "attending": 2500, "associate_chief": 3500, "chief": 5000},
        "special": {"none": 20000, "resident": 20000, "attending": 20000, "associate_chief": 20000,
                    "chief": 30000},
    }),
}

_NEIKE = Dept("内科", "门诊楼2层", (
    Dept("心内科", "门诊楼2层A区", introduction="冠心病、高血压、心律失常、心力衰竭的诊治。"),
    Dept("消化内科", "门诊楼2层B区", introduction="胃炎、消化性溃疡、肝胆胰疾病及内镜诊疗。"),
    Dept("呼吸内科", "门诊楼2层C区", introduction="慢性咳嗽、哮喘、慢阻肺、肺部感染。"),
    Dept("神经内科", "门诊楼2层D区", introduction="头痛、眩晕、脑血管病、癫痫。"),
))
_WAIKE = Dept("外科", "门诊楼3层", (
    Dept("普外科", "门诊楼3层A区", introduction="甲状腺、乳腺、疝、胆囊疾病的外科治疗。"),
    Dept("骨科", "门诊楼3层B区", introduction="骨折、关节疾病、运动损伤、脊柱疾病。"),
))
_ERKE = Dept("儿科", "门诊楼1层东侧", max_age=14, introduction="14周岁及以下儿童常见病、多发病的诊治。")
_FUCHAN = Dept("妇产科", "门诊楼4层", (
    Dept("妇科", "门诊楼4层A区", allowed_sex="F", introduction="妇科炎症、子宫肌瘤、妇科内分泌。"),
    Dept("产科", "门诊楼4层B区", allowed_sex="F", introduction="孕期检查、高危妊娠管理。"),
))
_YANKE = Dept("眼科", "门诊楼5层", introduction="白内障、青光眼、屈光不正、眼底病。")
_KOUQIANG = Dept("口腔科", "门诊楼5层", introduction="龋病、牙周病、根管治疗、口腔修复。")

_HIS_DEPARTMENTS = (
    Dept("内科", "门诊楼2层", (
        Dept("普通内科", "门诊楼2层A区", his_code="NEI", introduction="内科常见病、慢性病的诊治。"),
    )),
    Dept("儿科", "门诊楼1层东侧", max_age=14, his_code="ERK", introduction="14周岁及以下儿童常见病的诊治。"),
)
_HIS_DOCTORS = (
    Doc("普通内科", "王医生", "chief", "高血压、糖尿病", (), his_code="D001"),
    Doc("普通内科", "李医生", "attending", "呼吸道感染、胃炎", (), his_code="D002"),
    Doc("儿科", "张医生", "associate_chief", "小儿呼吸系统疾病", (), his_code="D003"),
)

HOSPITALS: tuple[DemoHospital, ...] = (
    DemoHospital(
        key="dongcheng", name="北京东城中心医院", short_name="东城中心", level="三级甲等", city="北京市",
        district="东城区", address="北京市东城区东四北大街120号", phone="010-65550100",
        latitude=39.9288, longitude=116.4169, fee_grade="tertiary",
        introduction="一所集医疗、教学、科研于一体的综合性三级甲等医院,心血管和消化专科特色突出。",
        departments=(_NEIKE, _WAIKE, _ERKE, _FUCHAN, _YANKE, _KOUQIANG),
        doctors=(
            Doc("心内科", "张伟", "chief", "冠心病、高血压、心力衰竭", ((MON, AM), (WED, AM), (FRI, PM))),
            Doc("心内科", "刘芳", "attending", "高血压、心律失常", ((TUE, AM), (THU, PM), (SAT, AM))),
            Doc("消化内科", "王建国", "associate_chief", "胃肠镜诊疗、消化道早癌筛查", ((MON, PM), (THU, AM))),
            Doc("呼吸内科", "李娜", "resident", "呼吸道感染、慢性咳嗽", ((MON, AM), (TUE, PM), (WED, EVE))),
            Doc("骨科", "赵磊", "chief", "人工关节置换、运动损伤", ((TUE, AM), (FRI, AM)), level="special"),
            Doc("普外科", "孙志强", "attending", "疝、甲状腺结节、胆囊结石", ((WED, PM), (SAT, AM))),
            Doc("儿科", "陈晓燕", "associate_chief", "小儿呼吸系统疾病、儿童哮喘", ((TUE, AM), (THU, AM))),
            Doc("妇科", "黄丽华", "chief", "子宫肌瘤、妇科内分泌", ((WED, AM), (FRI, PM))),
            Doc("眼科", "周明", "attending", "白内障、青光眼", ((MON, AM), (THU, PM))),
            Doc("口腔科", "吴婷", "resident", "龋病、根管治疗", ((SAT, DAY),)),
        ),
        clinics=(Clinic("内科", (MON, TUE, WED, THU, FRI, SAT), AM), Clinic("儿科", tuple(range(7)), PM)),
    ),
    DemoHospital(
        key="chaoyang", name="北京朝阳第一医院", short_name="朝阳一院", level="三级甲等", city="北京市",
        district="朝阳区", address="北京市朝阳区工人体育场南路8号", phone="010-65550200",
        latitude=39.9219, longitude=116.4436, fee_grade="tertiary", entrance="registration_level",
        introduction="朝阳区规模最大的综合医院之一,以半天为单位预约,开设儿科夜间门诊。",
        departments=(Dept("内科", "门诊楼2层", _NEIKE.children[:3]), _WAIKE, _ERKE, _YANKE),
        doctors=(
            Doc("心内科", "杨帆", "associate_chief", "心律失常、心脏起搏", ((MON, AM), (THU, AM))),
            Doc("消化内科", "何静", "attending", "慢性胃炎、功能性胃肠病", ((TUE, AM), (FRI, AM))),
            Doc("呼吸内科", "郭晓梅", "chief", "慢阻肺、肺结节", ((WED, AM), (SAT, AM))),
            Doc("骨科", "马俊", "attending", "骨折、腰椎间盘突出", ((MON, PM), (WED, PM))),
            Doc("普外科", "罗志刚", "resident", "体表肿物、外伤处理", ((TUE, PM), (THU, PM))),
            Doc("儿科", "林慧", "attending", "小儿消化、儿童保健", ((MON, AM), (WED, AM), (FRI, AM))),
            Doc("眼科", "高峰", "chief", "眼底病、糖尿病视网膜病变", ((TUE, AM), (FRI, PM))),
        ),
        clinics=(Clinic("儿科", tuple(range(7)), EVE, platform_capacity=20, onsite_capacity=20),),
        rules={"hold_minutes": 10, "slot_granularity": "half_day"},
    ),
    DemoHospital(
        key="xuhui", name="上海徐汇人民医院", short_name="徐汇人民", level="三级甲等", city="上海市",
        district="徐汇区", address="上海市徐汇区漕溪北路600号", phone="021-64550300",
        latitude=31.1880, longitude=121.4370, fee_grade="tertiary",
        introduction="上海西南片区的区域医疗中心,妇产科和神经内科为市级重点专科;按日预约,就诊当天按序号候诊。",
        departments=(_NEIKE, _WAIKE, _ERKE, _FUCHAN, _YANKE, _KOUQIANG),
        doctors=(
            Doc("心内科", "徐明", "chief", "冠心病介入治疗", ((MON, AM), (THU, AM))),
            Doc("消化内科", "朱红", "associate_chief", "炎症性肠病、肝硬化", ((TUE, PM), (FRI, AM))),
            Doc("呼吸内科", "宋佳", "resident", "上呼吸道感染、支气管炎", ((WED, AM), (SAT, AM))),
            Doc("神经内科", "沈国华", "chief", "脑血管病、帕金森病", ((TUE, AM),)),
            Doc("骨科", "胡军", "associate_chief", "脊柱外科、颈椎病", ((MON, PM), (THU, PM))),
            Doc("妇科", "顾婉清", "attending", "妇科炎症、月经失调", ((WED, AM), (FRI, PM))),
            Doc("产科", "钱雅琴", "associate_chief", "高危妊娠、产前检查", ((TUE, AM), (THU, AM))),
            Doc("儿科", "蒋小川", "attending", "儿童发热、小儿腹泻", ((MON, AM), (WED, PM), (SAT, AM))),
            Doc("眼科", "陆文斌", "attending", "近视防控、斜弱视", ((TUE, PM), (SAT, PM))),
            Doc("口腔科", "热依拉·艾山", "resident", "牙周病、口腔黏膜病", ((FRI, AM), (SUN, DAY))),
        ),
        clinics=(Clinic("内科", WEEKDAYS, AM),),
        rules={"slot_granularity": "day", "close_minutes_before_start": 60},
    ),
    DemoHospital(
        key="pudong", name="上海浦东第二医院", short_name="浦东二院", level="二级甲等", city="上海市",
        district="浦东新区", address="上海市浦东新区张杨路1500号", phone="021-58550400",
        latitude=31.2286, longitude=121.5270, fee_grade="secondary",
        introduction="服务周边社区的二级甲等综合医院,常见病、慢性病管理和口腔专科方便快捷。",
        departments=(Dept("内科", "门诊楼1层", _NEIKE.children[:2]), Dept("外科", "门诊楼2层", _WAIKE.children[:1]),
                     _YANKE, _KOUQIANG),
        doctors=(
            Doc("心内科", "唐文", "attending", "高血压、高脂血症", ((MON, AM), (WED, AM))),
            Doc("消化内科", "韩冬", "resident", "胃炎、便秘", ((TUE, PM), (THU, AM))),
            Doc("普外科", "曹宇", "associate_chief", "微创外科、胆囊疾病", ((FRI, AM),)),
            Doc("眼科", "冯雅", "resident", "干眼症、结膜炎", ((SAT, AM),)),
            Doc("口腔科", "彭丽华", "chief", "口腔修复、种植牙", ((TUE, AM), (THU, PM))),
        ),
        clinics=(Clinic("内科", (MON, TUE, WED, THU, FRI, SAT), AM, platform_capacity=20, onsite_capacity=20),),
        rules={"hold_minutes": 20, "cancel_minutes_before_visit_day": 120, "record_requirement": "create_at_hospital"},
    ),
    # Two hospitals on the simulated HIS (one simulator, two pools): departments and doctors
    # carry the simulator seed's codes (NEI / ERK, D001-D003), the HIS ids their schedules
    # are mapped by.
    DemoHospital(
        key="haidian", name="北京海淀协和联合医院", short_name="海淀联合", level="三级甲等", city="北京市",
        district="海淀区", address="北京市海淀区中关村南大街22号", phone="010-65550500",
        latitude=39.9590, longitude=116.3270, fee_grade="tertiary",
        introduction="号源由医院 HIS 定时同步(synced 模式);需已在本院建档(持就诊卡)方可网上预约。",
        departments=_HIS_DEPARTMENTS, doctors=_HIS_DOCTORS, clinics=(),
        rules={"record_requirement": "existing_record_required"}, his=HisLink("synced", "guahao"),
    ),
    DemoHospital(
        key="minhang", name="上海闵行华康医院", short_name="闵行华康", level="三级乙等", city="上海市",
        district="闵行区", address="上海市闵行区莘庄镇莘松路300号", phone="021-64550600",
        latitude=31.1120, longitude=121.3810, fee_grade="secondary",
        introduction="号源与其他平台共享,每次预约实时向医院 HIS 锁号(realtime 模式);首次预约时自动在医院建档。",
        departments=_HIS_DEPARTMENTS, doctors=_HIS_DOCTORS, clinics=(),
        rules={"record_requirement": "auto_create_in_his"}, his=HisLink("realtime", "shared"),
    ),
)


@dataclass(frozen=True)
class DemoPatient:
    relationship: str
    name: str
    id_body: str  # the first 17 digits: region, birth date, sequence (odd = male)
    phone: str


DEMO_PATIENTS = (
    DemoPatient("self", "陈思远", "11010119880315003", DEMO_PHONE),
    DemoPatient("child", "陈语桐", "11010520190608024", DEMO_PHONE),  # a child's contact is the parent
)


@dataclass(frozen=True)
class DemoStaff:
    username: str
    role: str
    display_name: str
    hospital_key: str | None  # None: platform-wide (operator)


STAFF = (
    DemoStaff("operator", "platform_operator", "平台运营", None),
    DemoStaff("admin1", "hospital_admin", "东城中心医院管理员", "dongcheng"),
    DemoStaff("scheduler1", "scheduler", "东城中心医院排班员", "dongcheng"),
    DemoStaff("desk1", "front_desk", "东城中心医院挂号窗口", "dongcheng"),
)


def demo_schedule_range(today: dt.date) -> tuple[dt.date, dt.date]:
    """Today and the 13 days after it (hospital time)."""
    return today, today + dt.timedelta(days=SCHEDULE_DAYS - 1)
