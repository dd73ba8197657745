"""Everything that differs between Odoo 18.0 and 19.0, in one place.

The addon installs from the same files on both series; each difference is chosen
here from ``odoo.release.version_info`` or from the fields that exist, never by
copying code. Keep this module small: a helper per difference, with the reason.
"""

import warnings

from odoo import Command, api, models, release

from odoo.addons.mail.tools.discuss import Store

try:  # Odoo 19 moved the RPC dispatcher out of odoo.api
    from odoo.service.model import call_kw
except ImportError:
    call_kw = api.call_kw


def is_model_method(method):
    """Whether RPC calls `method` without record ids (``@api.model``)."""
    return getattr(method, "_api", None) == "model" or getattr(
        method, "_api_model", False
    )


ODOO_MAJOR = release.version_info[0]


def sql_constraints(*constraints):
    """Class attributes declaring table constraints, from (name, definition, message).

    Odoo 18 reads ``_sql_constraints``; Odoo 19 ignores it (with a warning) and reads
    ``models.Constraint`` attributes instead. Both create the same PostgreSQL
    constraint, ``<table>_<name>``, so a database upgraded from 18 keeps it. Use it
    in a model's class body:
    ``locals().update(compat.sql_constraints(("name", "UNIQUE(x)", "Message."), ...))``
    """
    if hasattr(models, "Constraint"):
        return {
            f"_{name}": models.Constraint(definition, message)
            for name, definition, message in constraints
        }
    return {"_sql_constraints": list(constraints)}


def partner_number_fields(model):
    """The phone fields of a contact or lead, most mobile-like first.

    Odoo 19 dropped ``mobile`` from contacts and leads: ``phone`` is the one number.
    """
    return [name for name in ("mobile", "phone") if name in model._fields]


def partner_number(record):
    """The first number set on a contact or lead."""
    for name in partner_number_fields(record):
        if record[name]:
            return record[name]
    return False


def partner_phone_values(model, number):
    """Values that store `number` as the contact's (or lead's) mobile number."""
    return {partner_number_fields(model)[0]: number}


def setup_groups(env, category_xmlid, groups_xmlids, admin_group_xmlid, actions):
    """Link the addon's groups to their category and the actions to their groups.

    Odoo 18 puts groups in an ``ir.module.category`` (``category_id``) and names the
    many2manys ``users`` / ``groups_id``; Odoo 19 puts them in a
    ``res.groups.privilege`` (``privilege_id``) and names them ``user_ids`` /
    ``group_ids``. XML data cannot say both, so the data files call this.
    """
    Groups = env["res.groups"]
    category = env.ref(category_xmlid)
    groups = Groups.browse([env.ref(xmlid).id for xmlid in groups_xmlids])
    if "privilege_id" in Groups._fields:
        privilege_xmlid = category_xmlid.replace(
            "module_category_", "res_groups_privilege_"
        )
        privilege = env.ref(privilege_xmlid, raise_if_not_found=False)
        if not privilege:
            privilege = env["res.groups.privilege"].create(
                {"name": category.name, "category_id": category.id, "sequence": 30}
            )
            env["ir.model.data"]._update_xmlids(
                [{"xml_id": privilege_xmlid, "record": privilege}]
            )
        groups.write({"privilege_id": privilege.id})
    else:
        groups.write({"category_id": category.id})
    users_field = "user_ids" if "user_ids" in Groups._fields else "users"
    admins = env.ref("base.user_root") | env.ref("base.user_admin")
    env.ref(admin_group_xmlid).write(
        {users_field: [Command.link(user.id) for user in admins]}
    )
    for action_xmlid, group_xmlid in actions:
        action = env.ref(action_xmlid)
        field = "group_ids" if "group_ids" in action._fields else "groups_id"
        action.write({field: [Command.set(env.ref(group_xmlid).ids)]})


def notify_cron_progress(env, done, remaining):
    """Report a cron run's progress to Odoo.

    Odoo 19 deprecates ``_notify_progress`` for ``_commit_progress``, which also
    commits; the addon's crons commit on their own schedule, so the call stays,
    without the deprecation warning (Odoo's test runner fails on logged warnings).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        env["ir.cron"]._notify_progress(done=done, remaining=remaining)


def store_payload(model_name, values_list):
    """A ``mail.record/insert`` bus payload of plain values for one Discuss model.

    Odoo 18's Store takes (model name, values); Odoo 19's ``add_model_values``, and
    it marks HTML (``Markup``) values for its client, which Odoo 18's client marks
    itself. Either way the client updates the records wherever they are shown.
    """
    if hasattr(Store, "add_model_values"):
        store = Store()
        for values in values_list:
            store.add_model_values(model_name, values)
        return store.get_result()
    return Store(model_name, list(values_list)).get_result()


def store_add_values(store, model_name, values_list):
    """Add plain values (each with its ``id``) of one Discuss model to ``store``.

    Odoo 18's Store takes (model name, values); Odoo 19's ``add_model_values``.
    """
    if hasattr(store, "add_model_values"):
        for values in values_list:
            store.add_model_values(model_name, values)
    else:
        store.add(model_name, list(values_list))
    return store


def store_attrs(names, value, predicate):
    """Odoo 19's ``Store.Attr`` descriptions of computed channel values.

    ``value(record, name)`` gives each value, for the records ``predicate`` accepts.
    Odoo 18 has no such descriptions (its channels send ``_channel_basic_info``).
    """
    if not hasattr(Store, "Attr"):
        return []
    return [
        Store.Attr(
            name, lambda record, name=name: value(record, name), predicate=predicate
        )
        for name in names
    ]


def channel_pin_for_members(channel):
    """What Odoo 18's Discuss sends the members of a channel with a new message
    (pinned again in their sidebar); Odoo 19 does not send it."""
    if ODOO_MAJOR < 19:
        channel._bus_send_store(channel, {"is_pinned": True}, subchannel="members")


def channel_new_message(channel, message, msg_vals=None):
    """Discuss's ``discuss.channel/new_message`` notification of ``message``.

    Odoo 18 formats the message with ``Store(message)``; Odoo 19 with a Store bound
    to the channel's bus (what its members may see). ``msg_vals``, the values the
    message was created with, spares the lookup of its scheduled date (a query per
    message), as in Odoo's own notifications after a post.
    """
    kwargs = {"msg_vals": msg_vals} if msg_vals else {}
    if ODOO_MAJOR >= 19:
        data = Store(bus_channel=channel).add(message, **kwargs).get_result()
    else:
        data = Store(message, **kwargs).get_result()
    channel._bus_send("discuss.channel/new_message", {"data": data, "id": channel.id})


def reply_to_by_post(threads, authors, email_froms):
    """The Reply-To ``message_post`` gives each of the messages posted on
    ``threads[i]`` by ``authors[i]`` (``email_froms[i]`` its address), computed for
    all of them at once (mail.message's create computes it message by message).

    Odoo 18 formats the thread's alias or its company's catchall and falls back on
    the author's address; Odoo 19 also names the author, and takes one author per
    thread in a call: a thread posted on by several authors takes several calls.
    """
    result = [None] * len(threads)
    todo = list(range(len(threads)))
    while todo:
        first, later = {}, []
        for index in todo:
            if threads[index].id in first:
                later.append(index)
            else:
                first[threads[index].id] = index
        records = threads[0].browse(list(first)).sudo()
        if ODOO_MAJOR >= 19:
            reply_to = records._notify_get_reply_to_batch(
                defaults={tid: email_froms[i] for tid, i in first.items()},
                author_ids={tid: authors[i] for tid, i in first.items()},
            )
        else:
            reply_to = records._notify_get_reply_to(default=None)
        for thread_id, index in first.items():
            result[index] = reply_to[thread_id] or email_froms[index]
        todo = later
    return result


def push_attachments(target, messages):
    """Send the attachments of ``messages`` (mail.message) to ``target``'s bus
    channel (a discuss.channel or a res.partner), as Discuss sends those of an
    edited message: open conversations and chatters show them.

    Odoo 18 describes them with ``Store.many``; Odoo 19 with ``Store.Many`` and a
    Store bound to the target's bus channel.
    """
    if hasattr(Store, "Many"):
        Store(bus_channel=target).add(
            messages, [Store.Many("attachment_ids", sort="id")]
        ).bus_send()
        return
    store = Store()
    for message in messages:
        store.add(
            message, {"attachment_ids": Store.many(message.attachment_ids.sorted("id"))}
        )
    target._bus_send_store(store)
