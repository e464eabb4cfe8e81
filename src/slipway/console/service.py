"""What a user may do, checked in one place for the API and the pages alike; every action is
written to the audit table, refusals included."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from slipway.console import applogs, notifications, security, webhooks
from slipway.console.config import (
    ENVIRONMENT_NAME,
    Command,
    Config,
    ConfigError,
    Environment,
    Schedule,
    read_secret,
)
from slipway.console.db import ConsoleDB, DuplicateUser, User, system_user
from slipway.console.runs import RunError
from slipway.history import store as history_store

if TYPE_CHECKING:
    from slipway.console.runs import RunManager

PAGE_SIZES = range(1, 101)


class ConsoleError(Exception):
    """A refused request: HTTP status, a message for the user, and extra JSON fields."""

    def __init__(self, status: int, message: str, /, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


class Console:
    def __init__(self, config: Config, db: ConsoleDB, runs: RunManager | None) -> None:
        self.config = config
        self.db = db
        self.runs = runs
        self.app_logs = applogs.AppLogs(config, runs) if runs is not None else None
        self.notifier = (notifications.Notifier(config, db, runs) if runs is not None
                         else None)
        self.login_throttle = security.LoginThrottle(
            config.login_max_failures, config.login_window_seconds,
            account_max_failures=config.login_account_max_failures)

    # Lookups

    def environment(self, name: str | None) -> Environment:
        if not name:
            raise ConsoleError(422, "environment is required; known environments: "
                               + ", ".join(sorted(self.config.environments)))
        environment = self.config.environments.get(name)
        if environment is None:
            raise ConsoleError(422, f"unknown environment {name!r}; known environments: "
                               + ", ".join(sorted(self.config.environments)))
        return environment

    def deployable(self, user: User) -> list[Environment]:
        return [env for name, env in sorted(self.config.environments.items())
                if user.can_deploy(name)]

    def run(self, run_id: int) -> dict[str, Any]:
        run = self.runs.store().get_run(run_id)
        if run is None or run.get("is_deleted") == "Y":
            raise ConsoleError(404, f"no run {run_id} in the deploy history")
        return run

    def run_by_uuid(self, run_uuid: str) -> dict[str, Any]:
        run = self.runs.store().find_run(run_uuid)
        if run is None or run.get("is_deleted") == "Y":
            raise ConsoleError(404, f"no run {run_uuid} in the deploy history")
        return run

    def history(self, environment: str | None, status: str | None, page: int,
                per_page: int) -> dict[str, Any]:
        # Runs started from a terminal may name environments this console does not serve.
        if environment and not ENVIRONMENT_NAME.match(environment):
            raise ConsoleError(422, f"malformed environment name {environment!r}")
        if status and status not in history_store.STATUSES:
            raise ConsoleError(422, f"unknown status {status!r}; one of "
                               + ", ".join(history_store.STATUSES))
        if page < 1 or per_page not in PAGE_SIZES:
            raise ConsoleError(422, "page must be 1 or more and per_page between 1 and 100")
        store = self.runs.store()
        total = store.count_runs(environment=environment or None, status=status or None)
        runs = store.list_runs(environment=environment or None, status=status or None,
                               limit=per_page, offset=(page - 1) * per_page)
        return {"runs": runs, "total": total, "page": page, "per_page": per_page,
                "pages": max(1, -(-total // per_page))}

    def log(self, run_id: int, offset: int) -> dict[str, Any]:
        if offset < 0:
            raise ConsoleError(422, "offset must be 0 or more")
        run = self.run(run_id)
        text, next_offset, status = self.runs.store().read_log(run_id, offset)
        return {"id": run_id, "offset": offset, "next_offset": next_offset, "logs": text,
                "status": status,
                "complete": status != "running" and not self.runs.is_active(run["run_uuid"])}

    # Permission checks

    def _may_deploy(self, user: User, environment: Environment, action: str,
                    remote: str | None) -> None:
        if user.can_deploy(environment.name):
            return
        if user.role == "viewer":
            message = f"viewers cannot {action}"
        else:
            allowed = ", ".join(user.environments) or "none"
            message = (f"{user.name} may not {action} in environment {environment.name} "
                       f"(allowed: {allowed})")
        self.db.audit(user.name, action, "refused", environment.name, remote_addr=remote,
                      reason=message)
        raise ConsoleError(403, message)

    def _refuse(self, user: User, action: str, environment: str | None, remote: str | None,
                error: ConsoleError | security.InputError | RunError,
                run_id: int | None = None) -> ConsoleError:
        status = getattr(error, "status", 422)
        message = getattr(error, "message", str(error))
        self.db.audit(user.name, action, "refused", environment, run_id, remote, reason=message)
        return ConsoleError(status, message, **getattr(error, "extra", {}))

    # Actions

    def trigger(self, user: User, environment_name: str | None, branch: str | None,
                skip_build: bool, skip_migrations: bool, description: str | None,
                remote: str | None) -> dict[str, Any]:
        environment = self.environment(environment_name)
        self._may_deploy(user, environment, "deploy", remote)
        try:
            branch = security.check_branch(branch.strip() if branch and branch.strip()
                                           else environment.default_branch)
            description = security.check_description(description)
        except security.InputError as exc:
            raise self._refuse(user, "deploy", environment.name, remote, exc) from None
        params = {"branch": branch, "skip_build": bool(skip_build),
                  "skip_migrations": bool(skip_migrations), "description": description}
        return self._start_or_hold(user, environment, "deploy", params, remote)

    def rollback(self, user: User, environment_name: str | None, release: str | None,
                 deploy_id: int | None, restore_db: bool, description: str | None,
                 remote: str | None) -> dict[str, Any]:
        environment = self.environment(environment_name)
        self._may_deploy(user, environment, "rollback", remote)
        try:
            if release and deploy_id:
                raise security.InputError("give a release or a deploy id, not both")
            if deploy_id is not None:
                release = self._release_of(environment, deploy_id)
            if release:
                release = security.check_release(release)
            description = security.check_description(description)
        except (security.InputError, ConsoleError) as exc:
            raise self._refuse(user, "rollback", environment.name, remote, exc) from None
        params = {"release": release or None, "restore_db": bool(restore_db),
                  "description": description, "deploy_id": deploy_id}
        return self._start_or_hold(user, environment, "rollback", params, remote)

    def command(self, user: User, environment_name: str | None, name: str | None,
                dry_run: bool, description: str | None, remote: str | None) -> dict[str, Any]:
        """Start one command of the environment's allow-list (playbooks/manage.yml), with the
        permissions and approvals of a deploy; any other command is refused and audited."""
        environment = self.environment(environment_name)
        self._may_deploy(user, environment, "command", remote)
        try:
            entry = self._allowed_command(environment, name, dry_run)
            description = security.check_description(description)
        except (security.InputError, ConsoleError) as exc:
            raise self._refuse(user, "command", environment.name, remote, exc) from None
        params = {"command_name": entry.name, "command": entry.command,
                  "dry_run": bool(dry_run), "description": description}
        return self._start_or_hold(user, environment, "command", params, remote)

    def app_log(self, user: User, environment_name: str | None, unit: str, lines: int,
                since: str, remote: str | None) -> dict[str, Any]:
        """The last lines of the app's units per host (read-only): for admins, viewers and the
        environment's deployers; the unit group, line count and time range from fixed lists."""
        environment = self.environment(environment_name)
        if not user.can_read_logs(environment.name):
            message = f"{user.name} may not read the logs of environment {environment.name}"
            self.db.audit(user.name, "logs", "refused", environment.name, remote_addr=remote,
                          reason=message)
            raise ConsoleError(403, message)
        try:
            if unit not in applogs.UNITS:
                raise security.InputError("unit is one of " + ", ".join(applogs.UNITS))
            if isinstance(lines, bool) or not isinstance(lines, int) \
                    or not 1 <= lines <= applogs.MAX_LINES:
                raise security.InputError(f"lines is from 1 to {applogs.MAX_LINES}")
            if since not in applogs.SINCE:
                raise security.InputError("since is one of " + ", ".join(applogs.SINCE))
            result = self.app_logs.read(environment, unit, lines, since)
        except (security.InputError, RunError) as exc:
            raise self._refuse(user, "logs", environment.name, remote, exc) from None
        self.db.audit(user.name, "logs", "read", environment.name, remote_addr=remote,
                      unit=unit, lines=lines, since=since)
        return result

    @staticmethod
    def _allowed_command(environment: Environment, name: str | None, dry_run: bool) -> Command:
        entry = environment.command(name) if isinstance(name, str) else None
        if entry is None:
            allowed = ", ".join(command.name for command in environment.commands) or "none"
            raise ConsoleError(403, f"command {str(name)[:100]!r} is not on the allow-list of "
                               f"environment {environment.name} (allowed: {allowed})")
        if dry_run and not entry.dry_run:
            raise ConsoleError(403, f"command {entry.name!r} of environment {environment.name} "
                               "is not allowed as a dry run (its entry has no dry_run: true)")
        return entry

    def _release_of(self, environment: Environment, deploy_id: int) -> str:
        run = self.runs.store().get_run(deploy_id)
        if run is None:
            raise ConsoleError(404, f"no run {deploy_id} in the deploy history")
        if run["environment"] != environment.name:
            raise ConsoleError(422, f"run {deploy_id} deployed environment {run['environment']}, "
                               f"not {environment.name}")
        if run["status"] != "success" or not run.get("release_id"):
            raise ConsoleError(422, f"run {deploy_id} is not a successful run with a release "
                               f"id (status {run['status']}, release {run.get('release_id')})")
        return run["release_id"]

    def _start_or_hold(self, user: User, environment: Environment, kind: str,
                       params: dict[str, Any], remote: str | None) -> dict[str, Any]:
        if environment.requires_approval:
            running = self.runs.running_run(environment.name)
            if running is not None:
                error = ConsoleError(409, f"environment {environment.name} has a run going: run "
                                     f"{running['id']}", running_id=running["id"])
                raise self._refuse(user, kind, environment.name, remote, error)
            approval_id = self.db.add_approval(environment.name, kind, params, user.name)
            self.db.audit(user.name, kind, "pending approval", environment.name,
                          remote_addr=remote, approval_id=approval_id, **params)
            if self.notifier is not None:
                # In the background: the request never waits for (or fails with) a receiver.
                try:
                    self.notifier.approval_needed(environment, user.name, kind, params,
                                                  approval_id)
                except Exception as exc:  # noqa: BLE001 - the request is held all the same
                    self.db.audit("console", "notify", "failed", environment.name,
                                  event="approval_needed", approval_id=approval_id,
                                  error=f"{exc.__class__.__name__}: {exc}"[:500])
            return {"id": None, "approval_id": approval_id, "status": "pending_approval",
                    "environment": environment.name,
                    "message": f"environment {environment.name} needs the approval of a second "
                               "admin before this run starts"}
        return self._start(user.name, environment, kind, params, remote, actor=user.name)

    def _start(self, deployed_by: str, environment: Environment, kind: str,
               params: dict[str, Any], remote: str | None, actor: str,
               **audit_detail: Any) -> dict[str, Any]:
        description = params.get("description")
        try:
            if kind == "deploy":
                job = self.runs.start(environment, "deploy", deployed_by,
                                      branch=params["branch"], commit=params.get("commit"),
                                      skip_build=params["skip_build"],
                                      skip_migrations=params["skip_migrations"],
                                      description=description)
            elif kind == "command":
                # Checked again: an approved request runs only what the allow-list says now.
                entry = self._allowed_command(environment, params["command_name"],
                                              params["dry_run"])
                job = self.runs.start(environment, "command", deployed_by,
                                      command=entry.command, dry_run=params["dry_run"],
                                      description=description)
            else:
                job = self.runs.start(environment, "rollback", deployed_by,
                                      release=params.get("release"),
                                      restore_db=params.get("restore_db", False),
                                      description=description)
        except (RunError, ConsoleError) as exc:
            self.db.audit(actor, kind, "refused", environment.name, remote_addr=remote,
                          reason=exc.message)
            raise ConsoleError(exc.status, exc.message, **exc.extra) from None
        self.db.audit(actor, kind, "started", environment.name, job.run_id, remote,
                      run_uuid=job.run_uuid, **params, **audit_detail)
        return {"id": job.run_id, "run_uuid": job.run_uuid, "status": "running",
                "environment": environment.name, "kind": kind}

    def webhook(self, environment_name: str, headers: Mapping[str, str], body: bytes,
                remote: str | None) -> tuple[int, dict[str, Any]]:
        """A forge's push: deploy its commit as ``webhook:ENV`` (held for approval where the
        environment needs it). Returns the HTTP status and the answer; every outcome but an
        unknown environment is audited."""
        environment = self.config.environments.get(environment_name)
        if environment is None or environment.webhook is None:
            raise ConsoleError(404, f"no webhook for environment {environment_name[:100]!r}")
        actor = system_user("webhook", environment.name)
        try:
            secret = read_secret(environment.webhook.secret_file)
        except ConfigError as exc:
            self.db.audit(actor.name, "webhook", "refused", environment.name,
                          remote_addr=remote, reason=str(exc))
            raise ConsoleError(503, "the webhook's secret cannot be read; see the console's "
                               "audit table") from None
        try:
            delivery = webhooks.authenticate(headers, body, secret)
        except webhooks.WebhookError as exc:
            self.db.audit(actor.name, "webhook", "refused", environment.name,
                          remote_addr=remote, reason=exc.message)
            raise ConsoleError(exc.status, exc.message) from None
        seen = {"provider": delivery.provider, "delivery": delivery.delivery_id}

        def ignore(reason: str, status: str = "ignored") -> tuple[int, dict[str, Any]]:
            self.db.audit(actor.name, "webhook", status, environment.name, remote_addr=remote,
                          reason=reason, **seen)
            return 200, {"status": status, "reason": reason, "environment": environment.name}

        if not delivery.is_push:
            return ignore(f"a {delivery.event or 'nameless'} event, not a push")
        try:
            pushed = webhooks.push(body)
        except webhooks.WebhookError as exc:
            self.db.audit(actor.name, "webhook", "refused", environment.name,
                          remote_addr=remote, reason=exc.message, **seen)
            raise ConsoleError(exc.status, exc.message) from None
        keys = webhooks.delivery_keys(environment.name, delivery, body)
        if not self.db.add_delivery(keys, environment.name, delivery.provider,
                                    delivery.delivery_id):
            return ignore("this delivery was received already", "duplicate")
        seen.update(ref=pushed.ref, commit=pushed.commit)
        if pushed.branch is None:
            return ignore(f"{pushed.ref} is not a branch")
        if pushed.commit == webhooks.NO_COMMIT:
            return ignore(f"branch {pushed.branch} was deleted")
        if not any(fnmatch.fnmatchcase(pushed.branch, pattern)
                   for pattern in environment.webhook.branches):
            return ignore(f"branch {pushed.branch} is not one of "
                          + ", ".join(environment.webhook.branches))
        try:
            branch = security.check_branch(pushed.branch)
        except security.InputError as exc:
            self.db.audit(actor.name, "webhook", "refused", environment.name,
                          remote_addr=remote, reason=str(exc), **seen)
            raise ConsoleError(422, str(exc)) from None
        description = f"{delivery.provider} push to {branch}"
        if delivery.delivery_id:
            description += f" (delivery {delivery.delivery_id})"
        params = {"branch": branch, "commit": pushed.commit, "skip_build": False,
                  "skip_migrations": False, "description": description}
        try:
            result = self._start_or_hold(actor, environment, "deploy", params, remote)
        except ConsoleError:
            self.db.forget_deliveries(keys)
            raise
        return (202 if result["id"] is None else 201), result

    def scheduled(self, schedule: Schedule, now: datetime) -> dict[str, Any]:
        """Start (or hold for approval) a schedule's deploy as ``schedule:ENV``; skipped, and
        audited with the reason, when the environment has a run going. Records the outcome."""
        environment = self.config.environments[schedule.environment]
        actor = system_user("schedule", environment.name)
        detail = {"cron": schedule.cron.expression, "branch": schedule.branch}
        running = self.runs.running_run(environment.name)
        if running is not None:
            reason = f"environment {environment.name} has a run going: run {running['id']}"
            self.db.audit(actor.name, "schedule", "skipped", environment.name, reason=reason,
                          running_id=running["id"], **detail)
            self.db.set_schedule_outcome(schedule.key, now, "skipped", reason=reason)
            return {"status": "skipped", "reason": reason}
        params = {"branch": schedule.branch, "skip_build": False, "skip_migrations": False,
                  "description": schedule.description or f"scheduled: {schedule.cron.expression}"}
        try:
            result = self._start_or_hold(actor, environment, "deploy", params, None)
        except ConsoleError as exc:
            # Refused and audited on the way (a run started between the check and the start).
            self.db.set_schedule_outcome(schedule.key, now, "skipped", reason=exc.message)
            return {"status": "skipped", "reason": exc.message}
        outcome = "started" if result["id"] is not None else "pending approval"
        self.db.set_schedule_outcome(schedule.key, now, outcome, run_id=result["id"],
                                     approval_id=result.get("approval_id"))
        return result

    def cancel(self, user: User, run_id: int, remote: str | None) -> dict[str, Any]:
        run = self.run(run_id)
        environment = self.config.environments.get(run["environment"])
        if not (user.is_admin or (environment is not None
                                  and user.can_deploy(environment.name))):
            message = ("viewers cannot cancel runs" if user.role == "viewer" else
                       f"{user.name} may not cancel runs of environment {run['environment']}")
            self.db.audit(user.name, "cancel", "refused", run["environment"], run_id, remote,
                          reason=message)
            raise ConsoleError(403, message)
        if run["status"] != "running":
            error = ConsoleError(409, f"run {run_id} is not running (it is {run['status']})",
                                 run_status=run["status"])
            raise self._refuse(user, "cancel", run["environment"], remote, error, run_id)
        try:
            stopped = self.runs.cancel(run, user.name)
        except RunError as exc:
            raise self._refuse(user, "cancel", run["environment"], remote, exc, run_id) from None
        unlock: dict[str, Any] = {"unlock_run_id": None, "unlock_error": None}
        if environment is not None and run["playbook"] != environment.unlock_playbook.name:
            unlock = self.runs.release_lock(environment, run, user.name)
        elif environment is None:
            unlock["unlock_error"] = (f"environment {run['environment']} is not in this "
                                      "console's configuration; release the lock by hand")
        self.db.audit(user.name, "cancel", "cancelled", run["environment"], run_id, remote,
                      **stopped, **unlock)
        return {"id": run_id, "status": "cancelled", **stopped, **unlock}

    def release_after_interrupt(self, run: dict[str, Any], environment_name: str) -> None:
        environment = self.config.environments.get(environment_name)
        if environment is None:
            return
        unlock = self.runs.release_lock(environment, run, "console")
        self.db.audit("console", "interrupted", "found unfinished at start",
                      environment_name, run["id"], **unlock)

    def approve(self, user: User, approval_id: int, remote: str | None) -> dict[str, Any]:
        approval = self._pending(user, approval_id, "approve", remote)
        if approval["requested_by"] == user.name:
            error = ConsoleError(403, "a second admin must approve: you requested this run")
            raise self._refuse(user, "approve", approval["environment"], remote, error)
        environment = self.environment(approval["environment"])
        state, requester = self.db.approve(approval_id, user.name)
        if state is None:
            error = ConsoleError(409, f"approval request {approval_id} was decided already")
            raise self._refuse(user, "approve", environment.name, remote, error)
        if state == "cancelled":
            requested_by = approval["requested_by"]
            reason = (f"{requested_by} no longer has an account" if requester is None else
                      f"{requested_by} may no longer {approval['kind']} in environment "
                      f"{environment.name}")
            error = ConsoleError(409, f"approval request {approval_id} is cancelled: {reason}")
            raise self._refuse(user, "approve", environment.name, remote, error)
        try:
            result = self._start(approval["requested_by"], environment, approval["kind"],
                                 approval["params"], remote, actor=approval["requested_by"],
                                 approval_id=approval_id, approved_by=user.name)
        except ConsoleError as exc:
            self.db.reopen_approval(approval_id)
            raise self._refuse(user, "approve", environment.name, remote, exc) from None
        self.db.set_approval_run(approval_id, result["id"])
        self.db.audit(user.name, "approve", "approved", environment.name, result["id"], remote,
                      approval_id=approval_id, requested_by=approval["requested_by"])
        return {**result, "approval_id": approval_id, "approved_by": user.name}

    def reject(self, user: User, approval_id: int, remote: str | None) -> dict[str, Any]:
        approval = self._pending(user, approval_id, "reject", remote)
        if not self.db.decide_approval(approval_id, "rejected", user.name):
            raise ConsoleError(409, f"approval request {approval_id} was decided already")
        self.db.audit(user.name, "reject", "rejected", approval["environment"], remote_addr=remote,
                      approval_id=approval_id, requested_by=approval["requested_by"])
        return {"approval_id": approval_id, "status": "rejected"}

    def _pending(self, user: User, approval_id: int, action: str,
                 remote: str | None) -> dict[str, Any]:
        approval = self.db.approval(approval_id)
        if approval is None:
            raise ConsoleError(404, f"no approval request {approval_id}")
        if not user.is_admin:
            error = ConsoleError(403, f"only admins may {action} runs")
            raise self._refuse(user, action, approval["environment"], remote, error)
        if approval["state"] != "pending":
            error = ConsoleError(409, f"approval request {approval_id} was {approval['state']} "
                                 f"by {approval['decided_by']} already")
            raise self._refuse(user, action, approval["environment"], remote, error)
        return approval

    # Accounts

    def login(self, name: str, password: str, remote: str | None) -> User | None:
        """The user when the password is right; None when not; ConsoleError 429 when this
        name (or this address) failed too often lately."""
        wait = self.login_throttle.retry_after(name, remote)
        if wait > 0:
            self.db.audit(name[:64] or "-", "login", "throttled", remote_addr=remote)
            raise ConsoleError(429, "Too many failed logins; try again in "
                                    f"{math.ceil(wait)} s.", retry_after=math.ceil(wait))
        user, password_hash = self.db.password_hash(name)
        if not security.verify_password(password_hash, password) or user is None:
            self.login_throttle.failed(name, remote)
            self.db.audit(name[:64] or "-", "login", "failed", remote_addr=remote)
            return None
        self.login_throttle.succeeded(name, remote)
        if security.needs_rehash(password_hash):
            self.db.set_password_hash(user.id, security.hash_password(password))
        self.db.audit(user.name, "login", "ok", remote_addr=remote)
        return user

    def add_user(self, actor: str, name: str, role: str, environments: list[str],
                 password: str, remote: str | None = None) -> User:
        try:
            security.check_user_name(name)
            security.check_role(role)
            unknown = sorted(set(environments) - set(self.config.environments))
            if unknown:
                raise security.InputError(f"unknown environments {unknown}; known: "
                                          + ", ".join(sorted(self.config.environments)))
            if role == "deployer" and not environments:
                raise security.InputError("a deployer needs at least one environment (--env)")
            if role != "deployer" and environments:
                raise security.InputError(f"environments are for deployers; an {role} "
                                          "has none of its own")
            user = self.db.add_user(name, security.hash_password(password), role,
                                    environments)
        except (security.InputError, DuplicateUser) as exc:
            self.db.audit(actor, "adduser", "refused", remote_addr=remote, user=name,
                          reason=str(exc))
            status = 409 if isinstance(exc, DuplicateUser) else 422
            raise ConsoleError(status, str(exc)) from None
        self.db.audit(actor, "adduser", "ok", remote_addr=remote, user=name, role=role,
                      environments=environments)
        return user

    def delete_user(self, actor: User, name: str, remote: str | None) -> list[int]:
        """Delete an account; its pending approval requests are cancelled (their ids)."""
        if name == actor.name:
            error = ConsoleError(409, "you cannot delete your own account")
            raise self._refuse(actor, "deluser", None, remote, error)
        cancelled = self.db.delete_user(name, actor.name)
        if cancelled is None:
            raise self._refuse(actor, "deluser", None, remote,
                               ConsoleError(404, f"no user {name!r}"))
        self.db.audit(actor.name, "deluser", "ok", remote_addr=remote, user=name,
                      cancelled_approvals=cancelled)
        return cancelled

    def change_password(self, user: User, current: str, new: str, remote: str | None,
                        keep_session: str | None = None) -> int:
        """Set a new password once the current one is given; the user's other sessions end
        (how many is returned). Wrong current passwords count as failed logins."""
        wait = self.login_throttle.retry_after(user.name, remote)
        if wait > 0:
            self.db.audit(user.name, "password", "throttled", remote_addr=remote)
            raise ConsoleError(429, "Too many failed passwords; try again in "
                                    f"{math.ceil(wait)} s.", retry_after=math.ceil(wait))
        _stored_user, password_hash = self.db.password_hash(user.name)
        if not security.verify_password(password_hash, current):
            self.login_throttle.failed(user.name, remote)
            raise self._refuse(user, "password", None, remote,
                               ConsoleError(403, "the current password is wrong"))
        try:
            if new == current:
                raise security.InputError("the new password is the current one")
            new_hash = security.hash_password(new)
        except security.InputError as exc:
            raise self._refuse(user, "password", None, remote, exc) from None
        ended = self.db.set_password(user.id, new_hash, keep_session)
        self.db.audit(user.name, "password", "changed", remote_addr=remote, ended_sessions=ended)
        return ended

    # API tokens

    def _token_owner(self, actor: User | str, name: str, action: str,
                     remote: str | None) -> User:
        """The user whose tokens ``actor`` asks for: itself, or anyone for an admin and for
        the command line (``actor`` is then the operator's name)."""
        actor_name = actor if isinstance(actor, str) else actor.name
        if isinstance(actor, User) and not actor.is_admin and actor.name != name:
            message = "only admins may manage the API tokens of other users"
            self.db.audit(actor_name, action, "refused", remote_addr=remote, user=name,
                          reason=message)
            raise ConsoleError(403, message)
        user = self.db.user(name)
        if user is None:
            self.db.audit(actor_name, action, "refused", remote_addr=remote, user=name,
                          reason="no such user")
            raise ConsoleError(404, f"no user {name!r}")
        return user

    def new_token(self, actor: User | str, name: str, remote: str | None = None,
                  expires: str | None = None) -> dict[str, Any]:
        """A new API token (the secret is in the answer, and nowhere else afterwards)."""
        user = self._token_owner(actor, name, "token", remote)
        actor_name = actor if isinstance(actor, str) else actor.name
        try:
            lifetime = security.token_lifetime(expires)
        except security.InputError as exc:
            self.db.audit(actor_name, "token", "refused", remote_addr=remote, user=name,
                          reason=str(exc))
            raise ConsoleError(422, str(exc)) from None
        expires_at = history_store.utcnow() + lifetime if lifetime else None
        token = security.new_secret()
        token_id = self.db.add_token(user.id, security.secret_digest(token), expires_at)
        self.db.audit(actor_name, "token", "ok", remote_addr=remote, user=name,
                      token_id=token_id, expires_at=expires_at)
        return {"id": token_id, "name": name, "token": token, "expires_at": expires_at}

    def tokens(self, actor: User | str, name: str,
               remote: str | None = None) -> list[dict[str, Any]]:
        return self.db.tokens(self._token_owner(actor, name, "tokens", remote).id)

    def revoke_token(self, actor: User | str, token_id: int,
                     remote: str | None = None) -> dict[str, Any]:
        actor_name = actor if isinstance(actor, str) else actor.name
        owner = self.db.token_owner(token_id)
        if owner is None:
            self.db.audit(actor_name, "revoke-token", "refused", remote_addr=remote,
                          token_id=token_id, reason="no such token")
            raise ConsoleError(404, f"no API token {token_id}")
        self._token_owner(actor, owner, "revoke-token", remote)
        if not self.db.delete_token(token_id):
            raise ConsoleError(404, f"no API token {token_id}")
        self.db.audit(actor_name, "revoke-token", "ok", remote_addr=remote, user=owner,
                      token_id=token_id)
        return {"id": token_id, "name": owner, "revoked": True}
