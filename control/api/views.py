"""JSON shapes of records the API returns."""

from __future__ import annotations

from typing import Any

from bridge.control_port import ParticipantView
from control.callout import CallOut
from control.events import iso
from control.plane import ControlPlane
from control.store.records import CallRecord, Conference, Subscription
from control.usecases import participants


def conference_view(plane: ControlPlane, conference: Conference) -> dict[str, Any]:
    return {
        "id": conference.id,
        "name": conference.name,
        "access": conference.access,
        "code": conference.code,
        "state": conference.state,
        "start_time": iso(conference.start_at),
        "end_time": iso(conference.end_at),
        "duration_minutes": None if conference.duration_s is None else conference.duration_s // 60,
        "max_participants": conference.max_participants
        or plane.config.rooms.max_participants,
        "divert_to": conference.divert_to,
        "leader": conference.leader,
        "locked": conference.locked,
        "manual_answer": conference.manual_answer,
        "end_on_leader_exit": conference.end_on_leader_exit,
        "callers": list(conference.callers),
        "participants": participants.count(plane, conference),
        "dial_in": dial_in(plane, conference.name),
        "created_at": iso(conference.created_at),
        "ended_at": iso(conference.ended_at),
        "end_reason": conference.end_reason,
    }


def dial_in(plane: ControlPlane, room: str) -> str:
    return plane.sip_uri(room)


def participant_view(participant: ParticipantView) -> dict[str, Any]:
    return {
        "id": participant.id,
        "caller": participant.caller,
        "display_name": participant.display_name,
        "joined_at": iso(participant.joined_at) if participant.joined_at else None,
        "muted": participant.muted,
        "deaf": participant.deaf,
        "dtmf_enabled": participant.dtmf_enabled,
        "on_hold": participant.held or participant.on_hold,
        "talking": participant.talking,
        "volume_db": participant.volume_db,
        "codec": participant.codec,
        "packets_in": participant.packets_in,
        "packets_out": participant.packets_out,
        "packets_lost": participant.packets_lost,
        "jitter_ms": participant.jitter_ms,
        "frames_concealed": participant.frames_concealed,
        "frames_trimmed": participant.frames_trimmed,
        "srtp": participant.srtp,
        "srtp_rejected": participant.srtp_rejected,
    }


def call_out_view(call: CallOut) -> dict[str, Any]:
    return {
        "txn_ref": call.ref,
        "conference": call.room,
        "dest": call.dest,
        "caller_id": call.caller_id,
        "status": call.status,
        "sip_status": call.sip_status,
        "reason": call.reason,
        "tag": call.tag,
        "confirm": call.confirm,
        "started_at": iso(call.started_at) if call.started_at else None,
        "answered_at": iso(call.answered_at),
        "ended_at": iso(call.ended_at),
        "duration_s": round(call.duration_s, 3),
    }


def subscription_view(subscription: Subscription) -> dict[str, Any]:
    return {
        "id": subscription.id,
        "callback_url": subscription.callback_url,
        "events": list(subscription.event_types),
        "expires_at": iso(subscription.expires_at),
        "created_at": iso(subscription.created_at),
    }


def call_view(record: CallRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "call_id": record.call_id,
        "conference": record.room,
        "direction": record.direction,
        "caller": record.caller,
        "callee": record.callee,
        "started_at": iso(record.started_at),
        "answered_at": iso(record.answered_at),
        "ended_at": iso(record.ended_at),
        "duration_s": round(record.duration_s, 3),
        "end_reason": record.end_reason,
    }
