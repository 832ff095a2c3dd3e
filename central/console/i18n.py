"""The console's messages in English and Vietnamese (every string a page shows), and the choice of
language: the ``streetnode_lang`` cookie (the switch), else ``Accept-Language``, else the config."""

from __future__ import annotations

from central.console.config import LANGUAGES

LANG_COOKIE = "streetnode_lang"

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "title": "Streetnode console", "overview": "Overview", "logout": "Log out", "language": "Language",
        "login": "Log in", "user": "User name", "password": "Password",
        "login_failed": "Wrong user name or password.",
        "login_expired": "The form expired; please try again.",
        "map": "Map", "nodes": "Nodes", "node": "Node", "state": "State", "ward": "Ward",
        "flood": "Flood depth", "pm25": "PM2.5", "temperature": "Temperature", "rain": "Rain",
        "storm": "Storm", "storm_on": "storm mode", "last_upload": "Last upload", "backlog": "Backlog",
        "cpu": "CPU", "disk": "Disk", "clock": "Clock", "clock_ok": "synced", "clock_bad": "not synced",
        "live": "live", "late": "late", "buffering": "buffering", "silent": "silent",
        "no_location": "no location reported", "no_data": "no data", "ago": "ago", "never": "never",
        "updated": "Updated", "health": "Health", "charts": "Charts", "timeline": "Timeline",
        "completeness": "Completeness per hour", "gaps": "Gaps", "incidents": "Incidents",
        "buffered": "buffered (arrived late)", "corrected": "clock corrected", "gap": "gap",
        "reason": "reason", "readings": "readings", "oldest_unsent": "Oldest unsent reading",
        "firmware": "Firmware", "config_hash": "Config hash", "clock_offset": "Clock offset",
        "range": "Range", "min_max": "min–max", "mean": "mean", "none": "none",
        "band_flood_0": "dry", "band_flood_1": "shallow", "band_flood_2": "deep", "band_flood_3": "severe",
        "aqi_good": "good", "aqi_moderate": "moderate", "aqi_poor": "poor", "aqi_bad": "bad",
        "aqi_very_bad": "very bad", "aqi_hazardous": "hazardous", "legend": "Legend",
        "time_zone": "Times in", "back": "All nodes", "kind": "kind", "detail": "detail", "when": "when",
        "error_loading": "Could not load data; retrying.",
        "unit_s": "s", "unit_min": "min", "unit_h": "h", "unit_d": "d",
        "alerts": "Alerts", "alerts_active": "Active alerts", "alert": "Alert", "no_alerts": "No alerts.",
        "alert_count_1": "1 alert", "alert_count_n": "{n} alerts", "severity": "Severity",
        "sev_critical": "critical", "sev_warning": "warning", "sev_info": "info",
        "alert_open": "open", "alert_acknowledged": "acknowledged", "alert_resolved": "resolved",
        "opened": "Opened", "acknowledged_by": "Acknowledged by", "resolved_at": "Resolved",
        "history": "History", "acknowledge": "Acknowledge", "late_alert": "late (from backfill)",
        "transition_open": "opened", "transition_acknowledged": "acknowledged",
        "transition_resolved": "resolved",
        "rules": "Alert rules", "rule_name": "Rule", "rule_kind": "Kind", "rule_condition": "Condition",
        "rule_nodes": "Nodes", "rule_source": "Source", "rule_changed": "Changed by",
        "rule_clear": "clears", "rule_after": "no upload for", "rule_all_nodes": "all nodes",
        "source_file": "config file", "source_console": "console",
        "source_file_console": "file, changed in console",
        "rule_disable": "Disable", "rule_enable": "Enable", "rule_on": "on", "rule_off": "off",
        "rule_add": "Add or replace a rule", "rule_save": "Save rule", "rule_audit": "Changes (audit)",
        "rules_precedence": "Rules come from [alerts] of the config file; a rule saved "
        "here with the same name replaces the file's, a disabled one switches it off, a new name "
        "adds a rule.",
        "rule_form_help": "The fields of [[alerts.rules]] (docs/alerts.md); empty fields take their "
        "defaults.",
    },
    "vi": {
        "title": "Bảng điều khiển Streetnode", "overview": "Tổng quan", "logout": "Đăng xuất",
        "language": "Ngôn ngữ", "login": "Đăng nhập", "user": "Tên người dùng", "password": "Mật khẩu",
        "login_failed": "Sai tên người dùng hoặc mật khẩu.",
        "login_expired": "Biểu mẫu đã hết hạn; vui lòng thử lại.",
        "map": "Bản đồ", "nodes": "Trạm", "node": "Trạm", "state": "Trạng thái", "ward": "Phường",
        "flood": "Độ sâu ngập", "pm25": "PM2.5", "temperature": "Nhiệt độ", "rain": "Mưa",
        "storm": "Bão", "storm_on": "chế độ bão", "last_upload": "Lần gửi cuối", "backlog": "Tồn đọng",
        "cpu": "CPU", "disk": "Đĩa", "clock": "Đồng hồ", "clock_ok": "đã đồng bộ",
        "clock_bad": "chưa đồng bộ", "live": "trực tuyến", "late": "chậm", "buffering": "đang lưu đệm",
        "silent": "mất tín hiệu", "no_location": "chưa báo vị trí", "no_data": "không có dữ liệu",
        "ago": "trước", "never": "chưa bao giờ", "updated": "Cập nhật", "health": "Tình trạng",
        "charts": "Biểu đồ", "timeline": "Dòng thời gian", "completeness": "Độ đầy đủ theo giờ",
        "gaps": "Khoảng trống", "incidents": "Sự cố", "buffered": "lưu đệm (đến muộn)",
        "corrected": "đã hiệu chỉnh đồng hồ", "gap": "khoảng trống", "reason": "lý do",
        "readings": "số đo", "oldest_unsent": "Số đo cũ nhất chưa gửi", "firmware": "Phần mềm",
        "config_hash": "Mã cấu hình", "clock_offset": "Lệch đồng hồ", "range": "Khoảng thời gian",
        "min_max": "thấp nhất–cao nhất", "mean": "trung bình", "none": "không có",
        "band_flood_0": "khô", "band_flood_1": "nông", "band_flood_2": "sâu", "band_flood_3": "nghiêm trọng",
        "aqi_good": "tốt", "aqi_moderate": "trung bình", "aqi_poor": "kém", "aqi_bad": "xấu",
        "aqi_very_bad": "rất xấu", "aqi_hazardous": "nguy hại", "legend": "Chú giải",
        "time_zone": "Giờ theo", "back": "Tất cả các trạm", "kind": "loại", "detail": "chi tiết",
        "when": "thời điểm", "error_loading": "Không tải được dữ liệu; đang thử lại.",
        "unit_s": "giây", "unit_min": "phút", "unit_h": "giờ", "unit_d": "ngày",
        "alerts": "Cảnh báo", "alerts_active": "Cảnh báo đang hiệu lực", "alert": "Cảnh báo",
        "no_alerts": "Không có cảnh báo.", "alert_count_1": "1 cảnh báo", "alert_count_n": "{n} cảnh báo",
        "severity": "Mức độ", "sev_critical": "nghiêm trọng", "sev_warning": "cảnh giác",
        "sev_info": "thông tin", "alert_open": "mới", "alert_acknowledged": "đã xác nhận",
        "alert_resolved": "đã kết thúc", "opened": "Bắt đầu", "acknowledged_by": "Người xác nhận",
        "resolved_at": "Kết thúc", "history": "Lịch sử", "acknowledge": "Xác nhận",
        "late_alert": "muộn (từ dữ liệu gửi bù)", "transition_open": "bắt đầu",
        "transition_acknowledged": "đã xác nhận", "transition_resolved": "kết thúc",
        "rules": "Quy tắc cảnh báo", "rule_name": "Quy tắc", "rule_kind": "Loại",
        "rule_condition": "Điều kiện",
        "rule_nodes": "Trạm", "rule_source": "Nguồn", "rule_changed": "Người sửa",
        "rule_clear": "kết thúc khi", "rule_after": "không gửi dữ liệu trong", "rule_all_nodes": "mọi trạm",
        "source_file": "tệp cấu hình", "source_console": "bảng điều khiển",
        "source_file_console": "tệp, đã sửa trên bảng điều khiển",
        "rule_disable": "Tắt", "rule_enable": "Bật", "rule_on": "bật", "rule_off": "tắt",
        "rule_add": "Thêm hoặc thay thế quy tắc", "rule_save": "Lưu quy tắc",
        "rule_audit": "Lịch sử thay đổi",
        "rules_precedence": "Quy tắc lấy từ [alerts] của tệp cấu hình; quy tắc lưu ở "
        "đây cùng tên sẽ thay thế quy tắc của tệp, quy tắc bị tắt sẽ vô hiệu hóa nó, tên mới sẽ "
        "thêm quy tắc.",
        "rule_form_help": "Các trường của [[alerts.rules]] (docs/alerts.md); trường để trống lấy "
        "giá trị mặc định.",
    },
}


def pick_language(cookie: str | None, accept_language: str | None, default: str) -> str:
    """The cookie's language, else the first of ``Accept-Language`` (by q) we have, else ``default``."""
    if cookie in LANGUAGES:
        return cookie
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        ranked.append((-quality, index, tag.strip().lower().split("-")[0]))
    for negative_q, _index, language in sorted(ranked):
        if language in LANGUAGES and negative_q < 0:
            return language
    return default
